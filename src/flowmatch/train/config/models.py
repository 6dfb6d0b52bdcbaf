"""The ``model`` section: the network, by ``name`` (mlp, unet, dit, transformer, or any
network registered with `flowmatch.models.register`)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, Tag, field_validator

from flowmatch.train.config.types import (
    CUSTOM,
    MAX_WIDTH,
    Activation,
    Choice,
    Depth,
    EvenPositiveInt,
    NonEmptyPositiveIntList,
    PathStr,
    PositiveFloat,
    PositiveIntList,
    UnitFloat,
    Width,
    _Float,
    _Int,
    _Variant,
)


class _ModelVariant(_Variant):
    _not_params: ClassVar[tuple[str, ...]] = ("name", "init")


class MLPConfig(_ModelVariant):
    """``model: {name: mlp}``: an MLP, for points.

    Attributes:
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        activation: one of `ACTIVATIONS`.
        time_embed_dim: size of the sinusoidal time embedding; even.
        time_frequency: highest angular frequency of that embedding (rad per unit time); None:
            1000 for flow matching, 10 for meanflow, whose loss differentiates the network in
            time (high frequencies made it diverge; see `flowmatch.models.embeddings`).
        fourier_features: random Fourier features of the input (0: none), see
            `flowmatch.models.MLP`; they resolve sharp densities such as cities on a globe.
        fourier_scale: their frequency scale (radians per unit of the input).
        init: a run (or model) directory whose EMA weights initialise the network (warm start,
            e.g. reflow); its architecture must match. Not a parameter of the network.
    """

    name: Literal["mlp"] = "mlp"
    hidden: Width = 256
    depth: Depth = 3
    activation: Activation = "silu"
    time_embed_dim: EvenPositiveInt = 64
    time_frequency: PositiveFloat | None = None
    fourier_features: Annotated[_Int, Field(ge=0, le=MAX_WIDTH)] = 0
    fourier_scale: PositiveFloat = 1.0
    init: PathStr | None = None


class UNetConfig(_ModelVariant):
    """``model: {name: unet}``: a U-Net, for images.

    Attributes:
        channels: channels of the first level.
        multipliers: channel multiplier of each level (a level per entry; the image is halved
            between levels); a list or a comma-separated string.
        res_blocks: residual blocks per level.
        attention: feature-map sides with self-attention (e.g. [8]).
        groups: GroupNorm groups.
        dropout: dropout in the residual blocks, in [0, 1).
        time_embed_dim, time_frequency, init: as for mlp.
    """

    name: Literal["unet"] = "unet"
    channels: Width = 32
    multipliers: NonEmptyPositiveIntList = Field(default_factory=lambda: [1, 2])
    res_blocks: Depth = 1
    attention: PositiveIntList = Field(default_factory=list)
    groups: Width = 8
    dropout: UnitFloat = 0.0
    time_embed_dim: EvenPositiveInt = 64
    time_frequency: PositiveFloat | None = None
    init: PathStr | None = None


class DiTConfig(_ModelVariant):
    """``model: {name: dit}``: a diffusion transformer (DiT, Peebles & Xie 2023), for images:
    the image cut into patch x patch squares, a token each, through transformer blocks with
    adaLN-Zero time (and class) conditioning.

    Attributes:
        patch: side of the square patches; must divide the image side (8x8 digits: 1, 2, 4
            or 8; 28x28 Fashion-MNIST: 1, 2, 4, 7, 14 or 28).
        dim: width of the tokens; a multiple of heads (and of 4 with sincos positions).
        depth: transformer blocks.
        heads: attention heads.
        mlp_ratio: hidden width of each block's MLP, relative to dim.
        dropout: dropout in the blocks, in [0, 1).
        positions: sincos (fixed 2-D sine-cosine) | learned position embedding.
        time_embed_dim, time_frequency, init: as for mlp.
    """

    name: Literal["dit"] = "dit"
    patch: Annotated[_Int, Field(gt=0, le=64)] = 2
    dim: Width = 128
    depth: Depth = 4
    heads: Depth = 4
    mlp_ratio: Annotated[_Float, Field(gt=0, le=64)] = 4.0
    dropout: UnitFloat = 0.0
    positions: Literal["sincos", "learned"] = "sincos"
    time_embed_dim: EvenPositiveInt = 64
    time_frequency: PositiveFloat | None = None
    init: PathStr | None = None


class TransformerConfig(_ModelVariant):
    """``model: {name: transformer}``: a bidirectional sequence transformer with adaptive
    LayerNorm time (and class) conditioning, for token data (text); its length and
    vocabulary come from the data.

    Attributes:
        dim: width of the token representations.
        depth: transformer blocks.
        heads: attention heads; dim must be a multiple of heads.
        mlp_ratio: hidden width of each block's MLP, relative to dim.
        dropout: dropout in the blocks, in [0, 1).
        positions: learned | rotary position encoding.
        init: as for mlp.
    """

    name: Literal["transformer"] = "transformer"
    dim: Width = 128
    depth: Depth = 4
    heads: Depth = 4
    mlp_ratio: Annotated[_Float, Field(gt=0, le=64)] = 4.0
    dropout: UnitFloat = 0.0
    positions: Literal["learned", "rotary"] = "learned"
    init: PathStr | None = None


class CustomModelConfig(_ModelVariant):
    """``model: {name: NAME, ...}``: a network registered as NAME with
    `flowmatch.models.register`; its other keys (any, kept as given) are its constructor's
    arguments. NAME must be registered when the config is validated: import its module first
    (``--plugin MODULE`` on the command line, or an entry point).

    Attributes:
        name: the registered name.
        init: as for mlp.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    init: PathStr | None = None

    @field_validator("name")
    @classmethod
    def _check_registered(cls, value: str) -> str:
        from flowmatch.models import registry  # filled at import time by user plugins

        registry.lookup(value)  # a ValueError listing the registered names
        return value


_ModelUnion = (
    Annotated[MLPConfig, Tag("mlp")]
    | Annotated[UNetConfig, Tag("unet")]
    | Annotated[DiTConfig, Tag("dit")]
    | Annotated[TransformerConfig, Tag("transformer")]
    | Annotated[CustomModelConfig, Tag(CUSTOM)]
)
MODEL = Choice("model", "name", _ModelUnion)
ModelConfig = Annotated[_ModelUnion, MODEL.discriminator, MODEL.before]
"""The ``model`` section, by ``name`` (default mlp; unet or dit for images; transformer for
text; any other name is a registered network)."""
