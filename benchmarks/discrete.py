"""Discrete flow matching on real text, against an autoregressive model of the same size, a
bigram, and Meta's ``flow_matching`` discrete components.

**Names** (``load_corpus("names")``: 88,799 US census surnames, 10% held out; L = 14). A
discrete flow (mask source, linear kappa, cross-entropy loss, ``fm.train``) and a causal
transformer language model (:mod:`flowmatch.discrete.baselines`) with the same
``SequenceTransformer`` (same width and depth; equal parameter counts) are each trained for
the same wall time: ``--names-minutes`` for the flow, whose steps are chosen from the step
rate of a short warm-up run (and its cosine schedule set for them), then the language model
for as many steps as fill the flow's measured training time at its own warm-up rate. Both
use AdamW, lr ``--lr``, batch ``--names-batch``, EMA 0.999, seed 0. Held-out nats per
character (each character and the end token count, :func:`tokens_per_sequence`): the flow's
continuous-time bound (``elbo(steps=None)``, all held-out names) and its discrete-time bound
at each sampling NFE (the first ``--bound-num`` held-out names), the language model's exact
NLL and a bigram's (add-0.1). Samples: for each NFE, ``--draws`` draws of ``--samples``
names; the share found in the held-out list, in train + held-out, not in train (novel), and
their NLL under the language model (nats per character; lower is more typical of what it
learnt, not necessarily better: a collapsed sampler scores low too).

**SMILES** (``load_corpus("smiles", max_length=80, too_long="drop")``: NCI molecules of at
most 80 characters, 10% held out): the same two models for ``--smiles-minutes`` each; RDKit
validity, uniqueness and novelty (canonical SMILES) of ``--samples`` molecules per NFE.

**Meta's flow_matching** (names): their ``MixtureDiscreteProbPath(PolynomialConvexScheduler(
n=1.0))`` (the same linear path), ``MixturePathGeneralizedKL`` loss (times in [0, 1 - 1e-3]
as in their text example) and ``MixtureDiscreteEulerSolver`` (their defaults: float32
categorical draws), with the same network, data, batch, lr, optimiser and step count as our
flow. Their path and solver work over the mask id too, so the network's V logits get a
column of -inf (probability 0) for the mask: the same network, no extra parameters. Quality
at every NFE, and time ratios (theirs / ours) of a training step (interleaved rounds on fresh
copies) and of the sampler at each NFE (timed back to back with ours in every draw).
Install it with ``pip install --no-deps flow_matching``; without it that part is skipped.

Run ``python benchmarks/discrete.py`` (about 25 minutes on one thread); ``--quick`` is a
smoke run whose figures mean nothing. Writes the "## Discrete flow matching (CPU)" section of
``benchmarks/RESULTS.md`` and ``results.json`` under ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import flowmatch as fm
from flowmatch import discrete as fd
from flowmatch.data.corpora import load_corpus
from flowmatch.data.text import TextData
from flowmatch.discrete.baselines import (
    AutoregressiveModel,
    Bigram,
    tokens_per_sequence,
    train_autoregressive,
)
from flowmatch.metrics.text import canonical_smiles, novelty, uniqueness
from flowmatch.train.ema import EMA
from flowmatch.train.loop import lr_lambda

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Discrete flow matching (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_discrete"
NFES = (4, 8, 16, 32, 64)
WARMUP_STEPS = 15
T_MAX_META = 1.0 - 1e-3
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- models
def make_net(length: int, vocab: int, args: argparse.Namespace) -> nn.Module:
    """The flow's network: V + 1 input ids (the mask), V logits."""
    return fm.models.SequenceTransformer(
        length,
        vocab_size=vocab + 1,
        out_size=vocab,
        dim=args.dim,
        depth=args.depth,
        heads=args.heads,
    )


def make_flow(data: TextData, args: argparse.Namespace) -> fd.DiscreteFlowModel:
    torch.manual_seed(args.seed)
    path = fd.MixturePath(data.vocab.size, source="mask")
    net = make_net(data.length, data.vocab.size, args)
    return fd.DiscreteFlowModel(net, path, length=data.length, vocab=data.vocab)


def make_lm(data: TextData, args: argparse.Namespace) -> AutoregressiveModel:
    torch.manual_seed(args.seed)
    return AutoregressiveModel(
        data.length, data.vocab.size, pad_id=data.vocab.pad_id, dim=args.dim, depth=args.depth,
        heads=args.heads,
    )  # fmt: skip


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_flow(
    flow: fd.DiscreteFlowModel, train: Tensor, seconds: float, batch: int, args: Any
) -> tuple[fd.DiscreteFlowModel, dict[str, float]]:
    """fm.train for about ``seconds``: steps = seconds / (seconds per step of a warm-up run
    of WARMUP_STEPS steps on a copy). Returns the EMA model and the facts."""
    quiet = {"progress": False, "echo": lambda _m: None, "lr": args.lr, "seed": args.seed}
    start = time.perf_counter()
    fm.train(copy.deepcopy(flow), train, steps=WARMUP_STEPS, batch_size=batch, **quiet)
    per_step = (time.perf_counter() - start) / WARMUP_STEPS
    steps = max(1, round(seconds / per_step))
    start = time.perf_counter()
    ema = fm.train(flow, train, steps=steps, batch_size=batch, **quiet)
    wall = time.perf_counter() - start
    return ema, {"steps": steps, "train_s": wall, "ms_per_step": 1e3 * wall / steps}


def train_lm(
    lm: AutoregressiveModel, train: Tensor, seconds: float, batch: int, args: Any
) -> dict[str, float]:
    """train_autoregressive for about ``seconds``, steps from a warm-up run's rate."""
    warm = train_autoregressive(
        copy.deepcopy(lm), train, steps=WARMUP_STEPS, batch_size=batch, lr=args.lr, seed=args.seed
    )
    steps = max(1, round(seconds * warm["steps"] / warm["seconds"]))
    facts = train_autoregressive(
        lm, train, steps=steps, batch_size=batch, lr=args.lr, seed=args.seed
    )
    return {
        "steps": steps,
        "train_s": facts["seconds"],
        "ms_per_step": 1e3 * facts["seconds"] / steps,
    }


# ------------------------------------------------------------------- Meta's flow_matching
def meta_available() -> bool:
    return importlib.util.find_spec("flow_matching") is not None


class _MaskColumn(nn.Module):
    """Our network's V logits plus a -inf logit for the mask id (probability 0)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        logits = self.net(x, t)
        return torch.cat([logits, torch.full_like(logits[..., :1], -math.inf)], dim=-1)


class _Meta:
    """Their path, loss and solver around one network (V data ids + the mask id V)."""

    def __init__(self, vocab: int) -> None:
        from flow_matching.loss import MixturePathGeneralizedKL
        from flow_matching.path import MixtureDiscreteProbPath
        from flow_matching.path.scheduler import PolynomialConvexScheduler

        self.vocab = vocab
        self.path = MixtureDiscreteProbPath(scheduler=PolynomialConvexScheduler(n=1.0))
        self.loss = MixturePathGeneralizedKL(path=self.path)

    def step_loss(self, net: nn.Module, x1: Tensor) -> Tensor:
        t = torch.rand(x1.shape[0]) * T_MAX_META
        x0 = torch.full_like(x1, self.vocab)
        s = self.path.sample(x_0=x0, x_1=x1, t=t)
        return self.loss(_MaskColumn(net)(s.x_t, t), x1, s.x_t, t)

    def solver(self, net: nn.Module) -> Any:
        from flow_matching.solver import MixtureDiscreteEulerSolver
        from flow_matching.utils import ModelWrapper

        class Posterior(ModelWrapper):
            def forward(self, x: Tensor, t: Tensor, **_: Any) -> Tensor:
                return _MaskColumn(self.model)(x, t).float().softmax(-1)

        return MixtureDiscreteEulerSolver(
            model=Posterior(net), path=self.path, vocabulary_size=self.vocab + 1
        )

    @staticmethod
    def sample(solver: Any, num: int, length: int, vocab: int, nfe: int) -> Tensor:
        x0 = torch.full((num, length), vocab, dtype=torch.long)
        grid = torch.linspace(0.0, 1.0, nfe + 1)
        return solver.sample(x_init=x0, step_size=None, time_grid=grid)


def _train_steps(
    net: nn.Module, loss_fn: Callable[[nn.Module, Tensor], Tensor], train: Tensor, steps: int,
    batch: int, args: Any,
) -> tuple[Callable[[], None], EMA]:  # fmt: skip
    """One training step as fm.train takes it (AdamW, cosine over ``steps``, clip 1, EMA)."""
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(0, steps))
    ema = EMA(net, 0.999)
    gen = torch.Generator().manual_seed(args.seed)
    count = [0]

    def step() -> None:
        x1 = train[torch.randint(0, train.shape[0], (batch,), generator=gen)]
        loss = loss_fn(net, x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(net, count[0])
        count[0] += 1

    return step, ema


def train_meta(net: nn.Module, train: Tensor, steps: int, batch: int, args: Any) -> tuple:
    meta = _Meta(net.out_size)
    torch.manual_seed(args.seed)
    step, ema = _train_steps(net, meta.step_loss, train, steps, batch, args)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - start
    return ema.module.eval(), {"steps": steps, "train_s": wall, "ms_per_step": 1e3 * wall / steps}


def step_time_ratio(
    flow: fd.DiscreteFlowModel, train: Tensor, batch: int, rounds: int, per_round: int, args: Any
) -> dict[str, Any]:
    """Theirs / ours seconds per training step: fresh copies of one initial network, rounds
    of ``per_round`` steps each, alternating which goes first; the median of the rounds."""
    loss = fd.DiscreteFlowMatchingLoss(flow.path)
    ours_model = copy.deepcopy(flow).train()
    theirs_net = copy.deepcopy(flow.net).train()
    ours, _ = _train_steps(ours_model, lambda m, x: loss(m, x), train, 10**6, batch, args)
    theirs, _ = _train_steps(
        theirs_net, _Meta(flow.path.vocab_size).step_loss, train, 10**6, batch, args
    )
    ours(), theirs()  # first calls allocate
    ratios = []
    for r in range(rounds):
        times = {}
        for name in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
            fn = ours if name == "ours" else theirs
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name] = time.perf_counter() - start
        ratios.append(times["theirs"] / times["ours"])
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


# -------------------------------------------------------------------------- scoring
def per_char(nats: Tensor, tokens: Tensor, pad_id: int) -> tuple[float, float]:
    return fd.nats_per_token(nats, tokens_per_sequence(tokens, pad_id))


def name_quality(
    samples: Tensor, data: TextData, lm: AutoregressiveModel, sets: dict[str, set[str]]
) -> dict[str, float]:
    texts = data.vocab.decode_batch(samples)
    n = len(texts)
    nll, _ = per_char(lm.nll(samples), samples, data.vocab.pad_id)
    return {
        "held_out": sum(t in sets["test"] for t in texts) / n,
        "real": sum(t in sets["all"] for t in texts) / n,
        "novel": sum(t not in sets["train"] for t in texts) / n,
        "gen_nll": nll,
    }


def smiles_quality(samples: Tensor, data: TextData, train_canon: list) -> dict[str, float]:
    canon = canonical_smiles(data.vocab.decode_batch(samples))
    return {
        "validity": sum(c is not None for c in canon) / len(canon),
        "uniqueness": uniqueness(canon),
        "novelty": novelty(canon, train_canon),
    }


def summarise(cells: list[dict[str, float]]) -> dict[str, list[float]]:
    """{metric: [mean, sd over draws (0 for one draw)]}."""
    out = {}
    for key in cells[0]:
        values = [c[key] for c in cells]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = [statistics.fmean(values), sd]
    return out


def sample_cells(
    samplers: dict[str, Callable[[int, torch.Generator], Tensor]],
    nfes: dict[str, list[int]],
    score: Callable[[Tensor], dict[str, float]],
    num: int,
    draws: int,
    seed: int,
    log: Log,
) -> dict[str, dict[str, Any]]:
    """Every sampler at each of its NFEs, ``draws`` times; the samplers of one NFE run back
    to back (alternating order), so their times are comparable."""
    raw: dict[str, dict[int, list]] = {m: {k: [] for k in nfes[m]} for m in samplers}
    secs: dict[str, dict[int, float]] = {m: {k: 0.0 for k in nfes[m]} for m in samplers}
    all_nfes = sorted({k for ks in nfes.values() for k in ks})
    for d in range(draws):
        for k in all_nfes:
            names = [m for m in samplers if k in nfes[m]]
            for m in names if d % 2 == 0 else names[::-1]:
                torch.manual_seed(seed + 1000 * d + k)  # Meta's solver draws from torch's RNG
                gen = torch.Generator().manual_seed(seed + 1000 * d + k)
                start = time.perf_counter()
                x = samplers[m](k, gen)
                secs[m][k] += time.perf_counter() - start
                raw[m][k].append(score(x))
        log(f"  sampling draw {d + 1}/{draws} done")
    return {
        m: {str(k): {**summarise(raw[m][k]), "seconds": secs[m][k] / draws} for k in nfes[m]}
        for m in samplers
    }


# ------------------------------------------------------------------------- sections
def run_names(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    data = load_corpus("names", seed=args.seed)
    train, test = data.train, data.test
    if args.quick:
        train, test = train[:3000], test[:300]
    pad, L = data.vocab.pad_id, data.length
    sets = {
        "train": set(data.train_texts),
        "test": set(data.test_texts),
        "all": set(data.train_texts) | set(data.test_texts),
    }
    res: dict[str, Any] = {"train_rows": train.shape[0], "test_rows": test.shape[0], "L": L}
    res["vocab"] = data.vocab.size
    bigram = Bigram.fit(train, data.vocab.size, pad_id=pad)
    res["bigram"] = per_char(bigram.nll(test), test, pad)

    flow = make_flow(data, args)
    res["params_flow"] = num_params(flow.net)
    log(f"names: training the flow for {args.names_minutes} min ({res['params_flow']:,} params)")
    init_net = copy.deepcopy(flow.net)
    ema, res["flow"] = train_flow(flow, train, 60 * args.names_minutes, args.names_batch, args)
    log(f"  {res['flow']}")
    lm = make_lm(data, args)
    res["params_lm"] = num_params(lm)
    log(f"names: training the AR model for {res['flow']['train_s']:.0f} s")
    res["lm"] = train_lm(lm, train, res["flow"]["train_s"], args.names_batch, args)
    log(f"  {res['lm']}")
    res["lm_nll"] = per_char(lm.nll(test), test, pad)

    meta_net = None
    if args.meta and meta_available():
        log(f"names: training Meta's flow_matching for {res['flow']['steps']} steps")
        torch.manual_seed(args.seed)
        meta_net = copy.deepcopy(init_net)
        res["params_meta"] = num_params(meta_net)
        meta_net, res["meta"] = train_meta(
            meta_net, train, res["flow"]["steps"], args.names_batch, args
        )
        log(f"  {res['meta']}")
        rounds, per_round = (2, 2) if args.quick else (6, 8)
        res["meta_step_ratio"] = step_time_ratio(
            make_flow(data, args), train, args.names_batch, rounds, per_round, args
        )
    elif args.meta:
        res["meta_skipped"] = "flow_matching is not installed (pip install --no-deps flow_matching)"
        log(f"names: SKIPPED Meta's flow_matching: {res['meta_skipped']}")

    log("names: bounds")
    gen = torch.Generator().manual_seed(args.seed)
    res["elbo"] = per_char(fd.elbo(ema, test, draws=args.elbo_draws, generator=gen), test, pad)
    subset = test[: args.bound_num]
    res["bound_rows"] = subset.shape[0]
    res["lm_nll_subset"] = per_char(lm.nll(subset), subset, pad)
    nfes = sorted({*args.nfes, L})
    res["bounds"] = {}
    for k in nfes:
        nats = fd.elbo(ema, subset, steps=k, generator=gen)
        res["bounds"][str(k)] = per_char(nats, subset, pad)
    log(f"  ELBO {res['elbo']}, bounds {res['bounds']}")

    samplers: dict[str, Callable[[int, torch.Generator], Tensor]] = {
        "flow": lambda k, g: fd.sample(ema, args.samples, steps=k, generator=g),
        "ar": lambda k, g: lm.sample(args.samples, generator=g),
    }
    which = {"flow": nfes, "ar": [L]}
    if meta_net is not None:
        solver = _Meta(data.vocab.size).solver(meta_net)
        samplers["meta"] = lambda k, g: _Meta.sample(solver, args.samples, L, data.vocab.size, k)
        which["meta"] = nfes
    log("names: sampling")
    res["samples"] = sample_cells(
        samplers, which, lambda x: name_quality(x, data, lm, sets), args.samples, args.draws,
        args.seed, log,
    )  # fmt: skip
    return res


def run_smiles(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    from flowmatch.data.corpora import smiles_corpus

    limit = args.smiles_max_length
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_corpus("smiles", seed=args.seed, max_length=limit, too_long="drop")
    everything = smiles_corpus()
    res: dict[str, Any] = {
        "corpus": len(everything),
        "too_long": sum(len(s) > limit for s in everything),
        "max_length": limit,
        "warnings": [str(w.message) for w in caught],
    }
    train, test = data.train, data.test
    if args.quick:
        train, test = train[:500], test[:50]
    pad, L = data.vocab.pad_id, data.length
    res.update(train_rows=train.shape[0], test_rows=test.shape[0], L=L, vocab=data.vocab.size)
    train_canon = canonical_smiles(data.train_texts)
    res["train_valid"] = sum(c is not None for c in train_canon) / len(train_canon)
    bigram = Bigram.fit(train, data.vocab.size, pad_id=pad)
    res["bigram"] = per_char(bigram.nll(test), test, pad)

    flow = make_flow(data, args)
    res["params_flow"] = num_params(flow.net)
    log(f"smiles: training the flow for {args.smiles_minutes} min")
    ema, res["flow"] = train_flow(flow, train, 60 * args.smiles_minutes, args.smiles_batch, args)
    log(f"  {res['flow']}")
    lm = make_lm(data, args)
    res["params_lm"] = num_params(lm)
    log(f"smiles: training the AR model for {res['flow']['train_s']:.0f} s")
    res["lm"] = train_lm(lm, train, res["flow"]["train_s"], args.smiles_batch, args)
    log(f"  {res['lm']}")
    res["lm_nll"] = per_char(lm.nll(test), test, pad)
    gen = torch.Generator().manual_seed(args.seed)
    res["elbo"] = per_char(fd.elbo(ema, test, draws=args.elbo_draws, generator=gen), test, pad)
    log("smiles: sampling")
    samplers: dict[str, Callable[[int, torch.Generator], Tensor]] = {
        "flow": lambda k, g: fd.sample(ema, args.samples, steps=k, generator=g),
        "ar": lambda k, g: lm.sample(args.samples, generator=g),
    }
    res["samples"] = sample_cells(
        samplers, {"flow": list(args.smiles_nfes), "ar": [L]},
        lambda x: smiles_quality(x, data, train_canon), args.samples, args.smiles_draws,
        args.seed, log,
    )  # fmt: skip
    return res


# ---------------------------------------------------------------------------- tables
def _pm(pair: Sequence[float], digits: int = 3) -> str:
    return f"{pair[0]:.{digits}f} +- {pair[1]:.{digits}f}"


def _pct(cell: Sequence[float]) -> str:
    return f"{100 * cell[0]:.1f} +- {100 * cell[1]:.1f}"


def names_tables(res: dict[str, Any], args: Any) -> list[str]:
    L, flow, lm = res["L"], res["flow"], res["lm"]
    out = [
        f"### Names (last names: {res['train_rows']:,} train, {res['test_rows']:,} held out, "
        f"L = {L}, V = {res['vocab']})",
        "",
        f"Parameters: flow {res['params_flow']:,}, AR {res['params_lm']:,} (its unused time "
        f"MLP included)"
        + (f", Meta {res['params_meta']:,}" if "params_meta" in res else "")
        + f". Training (batch {args.names_batch}, lr {args.lr:g}): flow {flow['steps']:,} steps "
        f"in {flow['train_s']:.0f} s ({flow['ms_per_step']:.0f} ms/step), AR "
        f"{lm['steps']:,} steps in {lm['train_s']:.0f} s ({lm['ms_per_step']:.0f} ms/step)"
        + (
            f", Meta {res['meta']['steps']:,} steps in {res['meta']['train_s']:.0f} s"
            if "meta" in res
            else ""
        )
        + ".",
        "",
        "Held-out nats per character (characters + the end token; +- standard error over "
        "names, Monte Carlo noise of the bounds included):",
        "",
        "| model | held-out names | nats/char |",
        "|---|---:|---:|",
        f"| bigram (add-0.1) | {res['test_rows']:,} | {_pm(res['bigram'])} |",
        f"| AR (exact NLL) | {res['test_rows']:,} | {_pm(res['lm_nll'])} |",
        f"| flow, continuous-time bound ({args.elbo_draws} draws) | {res['test_rows']:,} "
        f"| {_pm(res['elbo'])} |",
        f"| AR (exact NLL), same subset | {res['bound_rows']:,} | {_pm(res['lm_nll_subset'])} |",
    ]
    for k, value in res["bounds"].items():
        out.append(f"| flow, discrete-time bound NFE {k} | {res['bound_rows']:,} | {_pm(value)} |")
    s = res["samples"]
    out += [
        "",
        f"Samples: {args.draws} draws of {args.samples:,} names per row, mean +- sd over "
        "draws. In held-out / real: share found in the held-out list / in train + held-out; "
        "novel: not in the training list; AR NLL: nats per character of the samples under the "
        "AR model; s: seconds per draw.",
        "",
        "| model | NFE | in held-out % | real % | novel % | AR NLL of samples | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("AR", "ar"), ("flow (ours)", "flow"), ("Meta flow_matching", "meta")]
    for label, key in rows:
        for k, c in s.get(key, {}).items():
            nfe = f"{k}" if key != "ar" else f"<= {k}"
            out.append(
                f"| {label} | {nfe} | {_pct(c['held_out'])} | {_pct(c['real'])} "
                f"| {_pct(c['novel'])} | {_pm(c['gen_nll'])} | {c['seconds']:.2f} |"
            )
    out.append("")
    if "meta" in s:
        ratio = res["meta_step_ratio"]
        out += [
            "Meta's flow_matching against ours (same network, data, batch, lr, optimiser and "
            f"steps). Training step time theirs / ours: {ratio['median']:.2f} (median of "
            f"interleaved rounds, range {ratio['min']:.2f}-{ratio['max']:.2f}); whole "
            f"training run {res['meta']['train_s'] / flow['train_s']:.2f}. Per NFE:",
            "",
            "| NFE | real % ours | real % theirs | AR NLL ours | AR NLL theirs "
            "| sampler time theirs / ours |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for k, theirs in s["meta"].items():
            ours = s["flow"][k]
            out.append(
                f"| {k} | {_pct(ours['real'])} | {_pct(theirs['real'])} | "
                f"{ours['gen_nll'][0]:.3f} | {theirs['gen_nll'][0]:.3f} | "
                f"{theirs['seconds'] / ours['seconds']:.2f} |"
            )
        out.append("")
    elif "meta_skipped" in res:
        out += [f"Meta's flow_matching: skipped ({res['meta_skipped']}).", ""]
    return out


def smiles_tables(res: dict[str, Any], args: Any) -> list[str]:
    flow, lm = res["flow"], res["lm"]
    notes = "; ".join(w for w in res["warnings"])
    out = [
        f"### SMILES (NCI molecules of at most {res['max_length']} characters: "
        f"{res['train_rows']:,} train, {res['test_rows']:,} held out, L = {res['L']}, "
        f"V = {res['vocab']})",
        "",
        f"{res['too_long']:,} of the {res['corpus']:,} molecules are longer than "
        f"{res['max_length']} characters and were dropped (to keep CPU training feasible)"
        + (f" ({notes})" if notes else "")
        + f"; {100 * res['train_valid']:.1f}% of the training SMILES parse. Parameters: flow "
        f"{res['params_flow']:,}, AR {res['params_lm']:,}. Training (batch "
        f"{args.smiles_batch}): flow {flow['steps']:,} steps in {flow['train_s']:.0f} s, AR "
        f"{lm['steps']:,} steps in {lm['train_s']:.0f} s. Held-out nats/char: bigram "
        f"{_pm(res['bigram'])}, AR {_pm(res['lm_nll'])}, flow continuous-time bound "
        f"{_pm(res['elbo'])}.",
        "",
        f"{args.samples:,} samples per draw, {args.smiles_draws} draw(s) (mean +- sd); "
        "RDKit validity, uniqueness among the valid, novelty of the distinct valid ones "
        "(canonical SMILES); s: seconds per draw.",
        "",
        "| model | NFE | valid % | unique % | novel % | s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in (("AR", "ar"), ("flow (ours)", "flow")):
        for k, c in res["samples"][key].items():
            nfe = f"{k}" if key != "ar" else f"<= {k}"
            out.append(
                f"| {label} | {nfe} | {_pct(c['validity'])} | {_pct(c['uniqueness'])} "
                f"| {_pct(c['novelty'])} | {c['seconds']:.2f} |"
            )
    out.append("")
    return out


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_HEADER,
        "",
        f"Measured {stamp} on {facts['cpu']}; torch {torch.__version__}, {args.threads} "
        f"thread(s); whole run {results['wall_s'] / 60:.1f} min.",
        "",
        f"Reproduce: `{' '.join(['python benchmarks/discrete.py', *results['argv']])}`",
        "",
        f"Every model: SequenceTransformer dim {args.dim}, depth {args.depth}, {args.heads} "
        "heads, AdamW with cosine decay, gradient clipping 1, EMA 0.999, seed "
        f"{args.seed}. Flow: mask source, linear kappa, cross-entropy loss; samples with "
        "`fd.sample` (Euler, no corrector, temperature 1). AR: causal, one token per "
        "evaluation (NFE <= L: it stops once every row has ended). The AR model is trained "
        "for the flow's measured training time. Wall times are on a shared machine.",
        "",
    ]
    if "names" in results:
        lines += names_tables(results["names"], args)
    if "smiles" in results:
        lines += smiles_tables(results["smiles"], args)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--names-minutes", type=float, default=3.0, help="flow (and AR) training")
    p.add_argument("--smiles-minutes", type=float, default=2.5, help="flow (and AR) training")
    p.add_argument("--names-batch", type=int, default=256)
    p.add_argument("--smiles-batch", type=int, default=64)
    p.add_argument("--smiles-max-length", type=int, default=80)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--samples", type=int, default=1000, help="samples per draw")
    p.add_argument("--draws", type=int, default=3, help="sampling draws per names cell")
    p.add_argument("--smiles-draws", type=int, default=1)
    p.add_argument("--elbo-draws", type=int, default=8)
    p.add_argument("--bound-num", type=int, default=1000, help="names for discrete bounds")
    p.add_argument("--parts", default="names,smiles", help="comma-separated: names, smiles")
    p.add_argument("--no-meta", dest="meta", action="store_false", help="skip flow_matching")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    if not args.parts or not set(args.parts) <= {"names", "smiles"}:
        p.error(f"--parts: expected names and/or smiles, got {args.parts}")
    for name in ("names_batch", "smiles_batch", "samples", "draws", "smiles_draws"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.names_minutes, args.smiles_minutes) <= 0:
        p.error("the training budgets must be > 0 minutes")
    args.nfes, args.smiles_nfes = NFES, NFES
    if args.quick:
        args.names_minutes = args.smiles_minutes = 0.04
        args.dim, args.depth, args.heads = 32, 1, 2
        args.samples, args.draws, args.elbo_draws, args.bound_num = 40, 2, 1, 50
        args.smiles_max_length = 30
        args.names_batch = args.smiles_batch = 32
        args.nfes, args.smiles_nfes = (4,), (4,)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    begin = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - begin:7.1f} s] {msg}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {"argv": argv}
    if "names" in args.parts:
        results["names"] = run_names(args, log)
    if "smiles" in args.parts:
        results["smiles"] = run_smiles(args, log)
    results["wall_s"] = time.perf_counter() - begin
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    section = render(results, args)
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    results["section"] = section
    return results


if __name__ == "__main__":
    main()
