"""Value types of the run config: checked numbers, comma lists, the names, the section base
and `Choice`, the machinery of the sections that are discriminated unions (`choices`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowmatch.sampling import SAMPLE_METHODS

ToyName = Literal["checkerboard", "8gaussians", "moons", "circles", "spirals", "rings"]
ManifoldSetName = Literal["airports", "quakes", "backbone", "frames", "residues"]
DataName = Literal[
    "checkerboard", "8gaussians", "moons", "circles", "spirals", "rings", "digits",
    "fashion", "airports", "quakes", "backbone", "frames", "residues",
]  # fmt: skip
ManifoldName = Literal["sphere", "torus"]
SolverName = Literal["euler", "midpoint", "heun", "rk4", "dopri5"]
# the library's samplers, so that the config's list cannot drift from flowmatch.sampling's
SamplerName = Literal[SAMPLE_METHODS]  # type: ignore[valid-type]
Activation = Literal["silu", "gelu", "relu", "tanh"]

TOY_DATASETS: tuple[str, ...] = get_args(ToyName)
MANIFOLD_DATASETS: tuple[str, ...] = get_args(ManifoldSetName)
SOLVER_METHODS: tuple[str, ...] = get_args(SolverName)
SAMPLER_METHODS: tuple[str, ...] = get_args(SamplerName)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
DATA_SUFFIXES = (".csv", ".npy")


def _reject_bool(value: Any) -> Any:
    # a boolean is an int in Python; in a config it is always a mistake
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


def _int_item(item: str) -> Any:
    # an item of a comma-separated string: "4" is the integer 4 (the string says so); any
    # other text stays a string for the item's own type to accept or refuse
    text = item.strip()
    return int(text) if text.isdigit() and len(text) <= 19 else text


def _as_list(value: Any) -> Any:
    # lets `--set eval.steps=1,2,4` mean `--set eval.steps=[1,2,4]`, and `eval.steps=8` mean [8]
    if isinstance(value, str):
        return [_int_item(item) for item in value.split(",") if item.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _even(value: int) -> int:
    if value % 2:
        raise ValueError(f"expected an even integer > 0, got {value}")
    return value


# Upper bounds of the config's numbers, so that a typo (or a fuzzer) cannot ask for a network,
# a run or an allocation no machine has: each is far above any sane run, and stated in the
# error message (``expected an integer in (0, 1e+09]``).
MAX_STEPS = 10**9
"""Steps, intervals and warmup of a run."""
MAX_WIDTH = 2**16
"""Widths of networks (hidden units, channels, embedding sizes, features)."""
MAX_DEPTH = 1024
"""Depths of networks (layers, blocks, heads)."""
MAX_POINTS = 10**8
"""Points of a data set (drawn toy points, held-out points, text lengths)."""
MAX_BATCH = 2**20
"""Points per training step."""
MAX_SAMPLES = 10**6
"""Samples per evaluation draw."""
MAX_SOLVER_STEPS = 100_000
"""Solver steps of one sampling."""
MAX_SEED = 2**63 - 1
"""Seeds: torch's generators take 64-bit seeds."""
MAX_LIST = 64
"""Entries of a list of step counts, methods, levels."""
MAX_SCALE = 1_000_000
"""Positive real parameters (noise scales, frequencies, clip norms)."""
MAX_PATH = 4096
"""Characters of a file path (Linux's PATH_MAX)."""

# Integers are strict: ``'5'`` and ``5.0`` are not the integer 5 (YAML reads 5 as an
# integer, so nothing is lost; a string or a float there is a mistake to report).
_Int = Annotated[int, BeforeValidator(_reject_bool), Strict()]
_Float = Annotated[float, BeforeValidator(_reject_bool), Strict()]  # 1 is accepted as 1.0
PositiveInt = Annotated[_Int, Field(gt=0, le=MAX_STEPS)]
NonNegativeInt = Annotated[_Int, Field(ge=0, le=MAX_STEPS)]
StepCount = Annotated[_Int, Field(gt=0, le=MAX_STEPS)]
Width = Annotated[_Int, Field(gt=0, le=MAX_WIDTH)]
Depth = Annotated[_Int, Field(gt=0, le=MAX_DEPTH)]
Seed = Annotated[_Int, Field(ge=0, le=MAX_SEED)]
PositiveFloat = Annotated[_Float, Field(gt=0, le=MAX_SCALE)]
NonNegativeFloat = Annotated[_Float, Field(ge=0, le=MAX_SCALE)]
UnitFloat = Annotated[_Float, Field(ge=0, lt=1)]  # in [0, 1)
Probability = Annotated[_Float, Field(ge=0, le=1)]  # in [0, 1]
EvenWidth = Annotated[Width, AfterValidator(_even)]
EvenPositiveInt = EvenWidth
SolverSteps = Annotated[_Int, Field(gt=0, le=MAX_SOLVER_STEPS)]
PositiveIntList = Annotated[
    list[Annotated[_Int, Field(gt=0, le=MAX_WIDTH)]],
    BeforeValidator(_as_list),
    Field(max_length=MAX_LIST),
]
NonEmptyPositiveIntList = Annotated[
    list[Annotated[_Int, Field(gt=0, le=MAX_WIDTH)]],
    BeforeValidator(_as_list),
    Field(min_length=1, max_length=MAX_LIST),
]
SolverStepsList = Annotated[
    list[SolverSteps], BeforeValidator(_as_list), Field(min_length=1, max_length=MAX_LIST)
]
PathStr = Annotated[str, Field(min_length=1, max_length=MAX_PATH)]
"""A file path (at most PATH_MAX characters)."""


class _FieldProblem(ValueError):
    """Raised by a cross-field check to point the error at one key of the section (a dotted
    key such as ``"model.name"`` when raised by `RunConfig`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Section(BaseModel):
    # frozen: a config is a value; change one with `apply_overrides` or `config_from_dict`,
    # which validate, rather than by assignment, which could leave it inconsistent.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        # `train:` with nothing under it (YAML null) means "all defaults"
        return {} if data is None else data


class _Variant(_Section):
    """One option of a union section; ``_not_params`` are its keys that are not parameters."""

    _not_params: ClassVar[tuple[str, ...]] = ()

    def params(self) -> dict[str, Any]:
        """The variant's parameters (its keys but the tag) as plain JSON types."""
        return self.model_dump(mode="json", exclude=set(self._not_params))


CUSTOM = "custom"
"""The union tag of every model name other than the built-in ones (a registered network)."""


def _same(value: Any, default: Any) -> bool:
    """Whether a raw config value is a field's default (True is not 1, [1, 2] is (1, 2))."""
    if isinstance(value, bool) != isinstance(default, bool):
        return False
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple)) and list(value) == list(default)
    try:
        return bool(value == default)
    except Exception:  # a value that cannot be compared is not a default
        return False


class Choice:
    """One union section: its name, tag ``key`` and ``union`` of ``Annotated[Variant,
    Tag(tag)]`` (the first is the default; the one tagged `CUSTOM` takes every other string
    tag). ``Annotated[union, choice.discriminator, choice.before]`` is the section's type.

    Old run directories hold every key of every variant (the config used to be flat):
    `prepare` drops the keys of other variants that are at their defaults and refuses the
    others, naming the variant they belong to.
    """

    def __init__(self, section: str, key: str, union: Any) -> None:
        self.section, self.key = section, key
        tagged = {get_args(a)[1].tag: get_args(a)[0] for a in get_args(union)}  # Annotated[V, Tag]
        self.custom: type[_Variant] | None = tagged.pop(CUSTOM, None)
        self.variants: dict[str, type[_Variant]] = tagged
        self.default = next(iter(tagged))
        self.discriminator = Discriminator(self.tag_of)
        self.before = BeforeValidator(self.prepare)
        self._keys: list[str] = []
        for cls in [*tagged.values(), *([self.custom] if self.custom else [])]:
            self._keys.extend(k for k in cls.model_fields if k not in self._keys)

    def keys(self) -> list[str]:
        """Every key of every variant, the tag first."""
        return list(self._keys)

    def loc_tags(self) -> tuple[str, ...]:
        """The tags pydantic puts in error locations."""
        return (*self.variants, *([CUSTOM] if self.custom else []))

    def variant(self, tag: object) -> type[_Variant] | None:
        """The variant a tag picks, or None for an unknown tag."""
        if not isinstance(tag, str):
            return None
        return self.variants.get(tag) or self.custom

    def owners(self, key: object) -> list[str]:
        """The built-in variants that have ``key``."""
        return [tag for tag, cls in self.variants.items() if key in cls.model_fields]

    def expected(self) -> str:
        """What the tag may be, for messages."""
        names = ", ".join(self.variants)
        return f"one of {names} or a registered model name" if self.custom else f"one of {names}"

    def describe(self) -> str:
        """What the section may be, for messages."""
        return f"a mapping ({self.key}: {self.expected()}; and its parameters)"

    def tag_of(self, value: Any) -> str | None:
        """The discriminator: the union tag of a raw section (None when it has none)."""
        if isinstance(value, BaseModel):
            value = {self.key: getattr(value, self.key, None)}
        if not isinstance(value, Mapping):
            return None
        tag = value.get(self.key, self.default)
        if not isinstance(tag, str):
            return None
        return CUSTOM if tag not in self.variants and self.custom else tag

    def without_defaults(self, data: Mapping[Any, Any], tag: object) -> dict[Any, Any]:
        """``data`` less the keys of other built-in variants (not ``tag``'s) at their default."""
        chosen = self.variant(tag)
        own = chosen.model_fields if chosen is not None else {}
        kept = {}
        for key, value in data.items():
            if key != self.key and key not in own:
                fields = [self.variants[o].model_fields[key] for o in self.owners(key)]
                if any(_same(value, f.get_default(call_default_factory=True)) for f in fields):
                    continue
            kept[key] = value
        return kept

    def prepare(self, value: Any) -> Any:
        """The before-validator: null is the default variant; legacy keys are dropped."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            return value  # the discriminator reports it
        tag = value.get(self.key, self.default)
        if not isinstance(tag, str) or tag not in self.variants:
            return value  # an unknown tag (reported), or a custom model: every key is its own
        kept = self.without_defaults(value, tag)
        own = self.variants[tag].model_fields
        for key in kept:
            owners = self.owners(key)
            if key != self.key and key not in own and owners:
                noun = self.section if self.key == "name" else self.key
                raise _FieldProblem(
                    key,
                    f"not a parameter of {noun} {tag!r} (a parameter of {' or '.join(owners)})",
                )
        return kept
