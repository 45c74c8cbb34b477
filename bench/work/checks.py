"""Reliability checks: a robustness number that looks too good says so.

Gradient masking makes a model look robust to the attacks tried without making it robust
(Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of Security"). Following
AutoAttack's ``checks.py`` (Croce & Hein 2020) and the sanity checks of Carlini et al. 2019
("On Evaluating Adversarial Robustness"), two kinds of check turn its symptoms into rows:

- model-level (``model_checks``): a few forward and backward passes on clean points ask
  whether gradient attacks can work on this model at all; and ``large_eps_zero``, the
  checks' own attack at a radius where every point must fall;
- result-level (``result_checks``): the robustness rows of one run are compared with each
  other for orderings every sound evaluation obeys, point by point on the points both
  evaluated where the rows carry per-point bits;
- cost (``cost_checks``): the CPU time of a sandboxed run against what its FLOPs explain.

Each check gives one row ``{check, passed, detail, value}``: ``value`` is the number behind
the verdict and ``detail`` says it in words, so a reader can judge a borderline case. A check
whose inputs are missing (no Square row, one ε only, no clean-correct point, only nested
sweep rows) gives no row; one that cannot run as configured gives a ``skipped`` row
(``passed`` null) saying why.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import ATTACKS
from bench.attacks.ascent import Norm, distances, l2_norms, step_direction
from bench.attacks.base import Attack
from bench.attacks.evaluate import BALL_TOLERANCE, evaluate_attack, evaluating
from bench.formats import format_eps
from bench.grid.spec import LargeEpsSpec
from bench.results import store
from bench.results.points import unpack
from bench.work.model import evaluation_of
from bench.work.rows import now

# --- thresholds ------------------------------------------------------------------------------

# A gradient whose L2 norm is at most this is zero in effect: ascent.step_direction divides
# L2 gradients by max(norm, 1e-12), so below it an L2 step shrinks with the gradient.
ZERO_GRADIENT_NORM = 1e-12
# AutoAttack warns on any zero gradient. A point with one is never moved by a gradient
# attack and so counts as robust unattacked: robust accuracy is overestimated by up to this
# fraction of the points. 1% matches MARGIN_FLOOR, the smallest gap the result checks flag.
ZERO_GRADIENT_FRACTION = 0.01
RANDOMIZED_PASSES = 3  # forward passes compared (AutoAttack's check_randomized uses 5)
# Logits are scaled to unit L2 norm per point before comparing passes (as AutoAttack does),
# so the tolerance is scale-free; it sits far above float32 and GPU-kernel noise (~1e-6).
RANDOMIZED_TOLERANCE = 1e-4
SOFTMAX_TOLERANCE = 1e-4  # |row sum - 1| or |logsumexp| below this on every point
LOSS_STEPS = (0.25, 0.5, 1.0)  # steps along the gradient, as fractions of eps
RANDOM_DIRECTIONS = 3  # random directions the gradient direction must beat
# A useful gradient beats RANDOM_DIRECTIONS random ones on nearly every point; a gradient
# that points nowhere (shattered) beats them on about 1 point in RANDOM_DIRECTIONS + 1.
# Failing when most points are not described sits between the two.
UNDESCRIBED_FRACTION = 0.5

MARGIN_FLOOR = 0.01  # one point in a hundred: randomized attacks differ by this across seeds
AUTOATTACK_GAP = 0.05  # AutoAttack this far below every other attack: they overestimate

ONE_STEP = ("fgsm", "ffgsm")
ITERATIVE = ("pgd", "apgd-ce", "apgd-t", "cw", "mifgsm", "difgsm")
WHITE_BOX = (*ONE_STEP, *ITERATIVE, "fab-t")
BLACK_BOX = "square"
ENSEMBLE = "autoattack"

Row = dict[str, object]


def _row(check: str, passed: bool, detail: str, value: float) -> Row:
    return {"check": check, "passed": bool(passed), "detail": detail, "value": float(value)}


# --- model-level checks ----------------------------------------------------------------------

def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: Norm, eps: float,
                 seed: int = 0) -> list[Row]:
    """Rows for ``randomized_outputs``, ``softmax_outputs``, ``zero_gradients`` and
    ``loss_along_gradient`` of ``model`` on (x, y), inputs in [0, 1].

    Meant for a few hundred points: it costs RANDOMIZED_PASSES forward passes, one
    backward pass and (1 + RANDOM_DIRECTIONS) · len(LOSS_STEPS) forward passes on the
    clean-correct points. The model runs in eval mode with frozen weights, and torch's
    global RNG is seeded with ``seed`` and restored, so the rows depend only on the seed.
    The gradient checks give no row when no point is classified correctly, and
    ``loss_along_gradient`` none at eps = 0.
    """
    x, y = x.detach(), y.detach()
    cuda = [x.device.index or 0] if x.device.type == "cuda" else []
    with evaluating(model), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # a randomized model's outputs then depend on the seed alone
        generator = torch.Generator(device=x.device).manual_seed(seed)
        outputs = [model(x) for _ in range(RANDOMIZED_PASSES)]
        rows = [_randomized_outputs(outputs), _softmax_outputs(outputs[0])]
        correct = outputs[0].argmax(dim=1) == y
        if correct.any():
            xc, yc = x[correct], y[correct]
            grad = _input_gradients(model, xc, yc)
            rows.append(_zero_gradients(grad))
            if eps > 0:  # the ε-ball of radius 0 has no direction to step in
                rows.append(_loss_along_gradient(model, xc, yc, grad, norm, eps, generator))
    return rows


def _input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point gradient of the CE loss w.r.t. an added delta (docs/conventions.md#performance-habits: FlopCounterMode
    raises on gradients w.r.t. a leaf fed straight into a module); summed, so a point's
    gradient does not depend on its batch. Zero where the loss has no path to the input."""
    delta = torch.zeros_like(x, requires_grad=True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        if not loss.requires_grad:  # e.g. argmax inside: no gradient at all
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(loss, delta)
    return grad


def _randomized_outputs(outputs: list[torch.Tensor]) -> Row:
    """AutoAttack ``check_randomized``; Athalye et al. 2018 §3.2 (stochastic gradients):
    a model whose eval-mode outputs vary needs EOT, which no attack here applies."""
    scaled = [o / l2_norms(o)[:, None].clamp_min(1e-12) for o in outputs]
    diff = max((a - b).abs().max().item() for a in scaled for b in scaled)
    preds = torch.stack([o.argmax(dim=1) for o in outputs])
    changed = int((preds != preds[0]).any(dim=0).sum())
    passed = diff <= RANDOMIZED_TOLERANCE and changed == 0
    detail = (f"{len(outputs)} eval-mode forward passes on {len(preds[0])} points differ by up to "
              f"{diff:.3g} (logits scaled to unit norm, tolerance {RANDOMIZED_TOLERANCE:g}); "
              f"{changed} predictions changed")
    if not passed:
        detail += ": the model is randomized (dropout left on, random transforms?) and " \
                  "attacks without EOT overestimate its robustness"
    return _row("randomized_outputs", passed, detail, diff)


def _softmax_outputs(logits: torch.Tensor) -> Row:
    """AutoAttack ``check_range_output``: probabilities (or log-probabilities) instead of
    logits make the CE loss saturate, so its gradients vanish and attacks on it stall."""
    in_range = bool(((logits >= -SOFTMAX_TOLERANCE) & (logits <= 1 + SOFTMAX_TOLERANCE)).all())
    prob_gap = (logits.sum(dim=1) - 1).abs().max().item() if in_range else math.inf
    log_prob_gap = logits.logsumexp(dim=1).abs().max().item()
    value = min(prob_gap, log_prob_gap)
    passed = value > SOFTMAX_TOLERANCE
    kind = "probabilities" if prob_gap <= log_prob_gap else "log-probabilities"
    detail = (f"outputs are logits: at least {value:.3g} from {kind} "
              f"(tolerance {SOFTMAX_TOLERANCE:g})" if passed else
              f"outputs look like {kind} (within {value:.3g} on every point): the model "
              f"must return logits, or CE gradients vanish")
    return _row("softmax_outputs", passed, detail, value)


def _zero_gradients(grad: torch.Tensor) -> Row:
    """AutoAttack ``check_zero_gradients``; Athalye et al. 2018 §3.1 (shattered gradients):
    a zero input gradient leaves gradient attacks where they start."""
    zero = l2_norms(grad) <= ZERO_GRADIENT_NORM
    fraction = zero.float().mean().item()
    passed = fraction <= ZERO_GRADIENT_FRACTION
    detail = (f"{int(zero.sum())} of {len(zero)} clean-correct points ({fraction:.1%}) have an "
              f"input gradient of L2 norm <= {ZERO_GRADIENT_NORM:g} "
              f"(threshold {ZERO_GRADIENT_FRACTION:.0%})")
    if not passed:
        detail += ": gradient attacks cannot move them"
    return _row("zero_gradients", passed, detail, fraction)


def _loss_along_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor,
                         norm: Norm, eps: float, generator: torch.Generator) -> Row:
    """Athalye et al. 2018 §3.1 (shattered gradients) and Carlini et al. 2019's advice to
    rule out gradient masking: the loss must rise along the input gradient, and more than
    along random directions of the same size, or the gradient does not describe the model.

    A point is described when its best loss over steps of LOSS_STEPS · eps along the
    gradient's ascent direction exceeds its clean loss and its best loss along each of
    RANDOM_DIRECTIONS random directions (random signs for L∞, Gaussian for L2).
    """
    def best_loss(direction: torch.Tensor) -> torch.Tensor:
        return torch.stack([
            F.cross_entropy(model((x + s * eps * direction).clamp(0, 1)), y, reduction="none")
            for s in LOSS_STEPS]).amax(dim=0)

    def random_direction() -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return step_direction(noise, norm)

    clean = F.cross_entropy(model(x), y, reduction="none")
    along_gradient = best_loss(step_direction(grad, norm))
    along_random = torch.stack([best_loss(random_direction())
                                for _ in range(RANDOM_DIRECTIONS)]).amax(dim=0)
    described = (along_gradient > clean) & (along_gradient > along_random)
    fraction = 1 - described.float().mean().item()
    passed = fraction <= UNDESCRIBED_FRACTION
    detail = (f"on {fraction:.1%} of {len(y)} clean-correct points the CE loss rises no more "
              f"along the gradient than along {RANDOM_DIRECTIONS} random directions "
              f"(steps {', '.join(f'{s:g}' for s in LOSS_STEPS)} x {norm} eps={format_eps(eps)}; "
              f"threshold {UNDESCRIBED_FRACTION:.0%})")
    if not passed:
        detail += ": the gradients do not describe the model (shattered or obfuscated)"
    return _row("loss_along_gradient", passed, detail, fraction)


# --- the checks' own attack at a radius where every point must fall -------------------------

GREY = 0.5  # the mid-grey image: within L∞ 0.5 of every image in [0, 1]
DEFAULT_LARGE_EPS = LargeEpsSpec()  # PGD-20 at L∞ 0.5 (the grid's checks.large_eps default)


def large_eps_zero(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                   seed: int = 0) -> Row:
    """``large_eps_zero``: Carlini et al. 2019, "with 'high' distortion, model accuracy
    should reach levels of random guessing"; Athalye et al. 2018 §3.4 (unbounded attacks
    must reach 100% success). ``attack`` (the grid's ``checks.large_eps``, PGD-20 at L∞ 0.5
    by default) is run from ``seed`` on (x, y), the checks' points.

    The bound needs no statistics: the grey image (0.5 everywhere) lies within the ball of
    every point within ``attack.eps`` of it (all of them at L∞ 0.5), and it is assigned one
    class, so of those points only the clean-correct ones of that class can stay robust.
    An attack leaving more (beyond MARGIN_FLOOR, a point in a hundred) fails where any model
    must break: its gradients mislead it, or it is broken. Points out of the grey image's
    reach (a radius configured below 0.5) are not bounded, so there the check can only pass.
    """
    res = evaluate_attack(model, x, y, attack, seed=seed)
    with evaluating(model):
        grey_class = int(model(torch.full_like(x[:1], GREY)).argmax(dim=1))
    to_grey = distances(torch.full_like(x, GREY), x, attack.norm)
    reach = (to_grey <= attack.eps + BALL_TOLERANCE).cpu()
    of_class = (y.cpu() == grey_class)
    bound = (res.clean_correct & (of_class | ~reach)).float().mean().item()
    acc, n, within = res.robust_acc, res.n_examples, int(reach.sum())
    passed = acc <= bound + MARGIN_FLOOR + 1e-9
    if within == n:
        reached = f"all {n} points"
        who = "only those, if clean-correct, can stay robust"
    else:
        reached = f"{within} of the {n} points"
        who = f"only those and the {n - within} out of its reach, if clean-correct, can stay robust"
    detail = (f"{attack.name}-{attack.steps} at {attack.norm} eps={format_eps(attack.eps)} "
              f"(seed {seed}) leaves robust acc {acc:.3f} on {n} points; allowed: bound "
              f"{bound:.3f} + margin {MARGIN_FLOOR:.3f}. The grey image lies within eps of "
              f"{reached} and is classified {grey_class}, the label of "
              f"{int((of_class & reach).sum())} of them: {who}")
    if not passed:
        detail += "; the attack fails where any model must break (gradient masking?)"
    return _row("large_eps_zero", passed, detail, acc)


def skipped(check: str, reason: str) -> Row:
    """A check that could not run here, with why: ``passed`` and ``value`` are null, so it
    neither passes nor fails a run (``perbench checks`` lists it as skipped)."""
    return {"check": check, "passed": None, "detail": f"skipped: {reason}", "value": None}


def large_eps_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: LargeEpsSpec | None,
                   threat_norm: str, *, seed: int = 0) -> list[Row]:
    """The ``large_eps_zero`` row for the grid's ``checks.large_eps`` (None: the check is
    off, no row), or a skipped row where the spec gives no radius for this norm."""
    if spec is None:
        return []
    norm, eps = spec.radius(threat_norm)
    if eps is None:
        d = x[0].numel()
        return [skipped("large_eps_zero", (
            f"no default radius under {norm}: every point falls within {norm} "
            f"0.5·sqrt(d) = {0.5 * math.sqrt(d):.3g} of the grey image here (d = {d}); "
            f"set checks.large_eps.eps in grid.yaml, or norm: Linf"))]
    attack = ATTACKS.create(spec.name, norm=norm, eps=eps, steps=spec.steps,
                            restarts=spec.restarts, **spec.config)
    return [large_eps_zero(model, x, y, attack, seed=seed)]


# --- paired comparisons ----------------------------------------------------------------------

# One-sided level of the exact sign test on the points two evaluations disagree on
# (McNemar's exact test): a gap counts as real when chance alone gives one at least as
# large at most this often, as the unpaired margin's two standard errors do (z ≈ 1.96).
PAIRED_ALPHA = 0.025


def sign_test_limit(discordant: int, alpha: float = PAIRED_ALPHA) -> int:
    """The most of ``discordant`` points one side may hold before the exact one-sided sign
    test calls it more than chance: the largest k with P(Binomial(d, 1/2) >= k) > alpha."""
    total, tail = 2 ** discordant, 0
    for k in range(discordant, -1, -1):
        tail += math.comb(discordant, k)
        if tail > alpha * total:
            return k
    return 0  # not reached: P(X >= 0) = 1


def paired_margin(discordant: int, n: int, alpha: float = PAIRED_ALPHA) -> float:
    """Tolerance for the gap between two evaluations of the same ``n`` points that disagree
    on ``discordant`` of them (robust under one, broken by the other), at least
    MARGIN_FLOOR.

    Two attacks equally strong on these points would each hold about half of the
    disagreements; the gap is (held by one − held by the other) / n, so the largest gap
    the sign test lets pass is (2 · sign_test_limit(d) − d) / n. Points both evaluations
    agree on carry no information about which is stronger, which is why this margin is
    far below two independent binomial errors. Examples at n = 500 (Square on the
    fashion-mnist grid's 500 points): d = 5 → 0.010 (the floor), 10 → 0.012, 20 → 0.016,
    40 → 0.024, 80 → 0.036; the unpaired margin (:func:`_margin`) is 0.045 at robust
    accuracy 0.5, 0.041 at 0.3 or 0.7, 0.027 at 0.1 or 0.9, whatever the points say.
    """
    limit = sign_test_limit(discordant, alpha)
    return max(MARGIN_FLOOR, (2 * limit - discordant) / n)


def _bits(row) -> np.ndarray | None:
    """A robustness row's robust bits, None where it predates per-point results."""
    data = row.get("robust_points") if hasattr(row, "get") else None
    if data is None or (isinstance(data, float) and math.isnan(data)):
        return None
    return unpack(data, int(row["n_examples"]))


@dataclass(frozen=True)
class _Gap:
    """``second``'s robust accuracy minus ``first``'s, and the tolerance chance allows it,
    in words (``numbers``)."""

    first: float  # robust accuracy of the first row on the points compared
    second: float
    allowed: float
    numbers: str

    @property
    def gap(self) -> float:
        return self.second - self.first

    @property
    def excess(self) -> float:
        return _excess(self.gap, self.allowed)


def _gap(first, second, first_name: str, second_name: str, *, gap_name: str = "gap",
         tolerance: float | None = None) -> _Gap:
    """Paired where both rows carry per-point bits (on the prefix both evaluated: points
    robust under one and broken by the other, :func:`paired_margin`), else from the two
    robust accuracies with two binomial errors (:func:`_margin`). ``tolerance``, where
    larger, replaces the margin."""
    a, b = _bits(first), _bits(second)
    if a is not None and b is not None:
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        only_first, only_second = int((a & ~b).sum()), int((b & ~a).sum())
        margin = paired_margin(only_first + only_second, n)
        allowed = margin if tolerance is None else max(margin, tolerance)
        gap = (only_second - only_first) / n
        numbers = (f"({gap_name} {gap:.3f} on the n={n} points both evaluated: {only_second} "
                   f"robust only under {second_name}, {only_first} only under {first_name}; "
                   f"paired margin {allowed:.3f})")
        return _Gap(float(a.mean()), float(b.mean()), allowed, numbers)
    p1, p2 = float(first["robust_acc"]), float(second["robust_acc"])
    n1, n2 = int(first["n_examples"]), int(second["n_examples"])
    margin = _margin(p1, p2, n1, n2)
    allowed = margin if tolerance is None else max(margin, tolerance)
    return _Gap(p1, p2, allowed, _numbers(p2 - p1, n1, n2, allowed, gap_name))


# --- result-level checks ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Finding:
    """One comparison behind a result check: ``excess`` > 0 means it fails."""

    excess: float  # how far the observation lies past its tolerance
    value: float
    detail: str


def result_checks(rows: pd.DataFrame, num_classes: int | None = None, *,
                  autoattack_gap: float = AUTOATTACK_GAP) -> list[Row]:
    """Rows for ``blackbox_beats_whitebox``, ``one_step_beats_iterative``,
    ``autoattack_gap`` and ``eps_monotone`` over one run's robustness rows (columns attack,
    norm, eps, steps, n_examples, robust_acc, status; ``restarts``, ``sweep``,
    ``attack_config`` and ``robust_points`` are used where present). Failed and unfinished
    rows are ignored. ``num_classes`` is accepted for callers of the time when the large-ε
    check read its number off these rows; it now runs its own attack
    (:func:`large_eps_zero`).

    Attacks are compared within one norm and one ε. Where an attack has several rows
    there (more steps, more points), its lowest robust accuracy stands for it. Rows with
    per-point bits are compared point by point on the points both evaluated (paired);
    rows from before per-point results by their accuracies (unpaired). Each check gives
    one row, for its worst comparison, and none when it has nothing to compare.
    """
    done = rows[(rows["status"] != "failed") & rows["robust_acc"].notna()]
    done = done.assign(eps_key=done["eps"].round(9))  # one ε, however it was parsed
    # Per (norm, ε, attack) the strongest row: the worst case any of its settings found.
    strongest = (done.sort_values(["robust_acc", "n_examples"], ascending=[True, False],
                                  kind="stable")
                 .drop_duplicates(["norm", "eps_key", "attack"]))
    findings = {
        "blackbox_beats_whitebox": list(_blackbox_beats_whitebox(strongest)),
        "one_step_beats_iterative": list(_one_step_beats_iterative(strongest)),
        "autoattack_gap": list(_autoattack_gap(strongest, autoattack_gap)),
        "eps_monotone": list(_eps_monotone(done)),
    }
    return [_verdict(check, found) for check, found in findings.items() if found]


def _verdict(check: str, findings: list[_Finding]) -> Row:
    """The worst finding speaks for the check; the count of other failures is appended."""
    worst = max(findings, key=lambda f: f.excess)
    failing = sum(f.excess > 0 for f in findings)
    detail = worst.detail + (f" (and {failing - 1} more failing)" if failing > 1 else "")
    return _row(check, failing == 0, detail, worst.value)


def _margin(p1: float, p2: float, n1: int, n2: int) -> float:
    """Tolerance for a gap between two robust accuracies without per-point bits: two
    binomial standard errors at their mean accuracy on the smaller evaluation, at least
    MARGIN_FLOOR.

    Evaluations are nested subsets (docs/conventions.md#evaluation-subsets): the smaller one's sampling error bounds how
    far the two can disagree by chance; on the same points the margin also absorbs the
    seed-to-seed spread of randomized attacks. A one-point gap on n >= 2 points never
    exceeds it: the mean p then lies in [1/(2n), 1 - 1/(2n)], where 2·sqrt(p(1-p)/n) > 1/n.
    """
    p, n = (p1 + p2) / 2, min(n1, n2)
    return max(MARGIN_FLOOR, 2 * math.sqrt(p * (1 - p) / n))


def _numbers(gap: float, n1: int, n2: int, margin: float, gap_name: str = "gap") -> str:
    n = f"{n1}" if n1 == n2 else f"{n1}/{n2}"
    return f"({gap_name} {gap:.3f}, n={n}, margin {margin:.3f})"


def _excess(gap: float, tolerance: float) -> float:
    return gap - tolerance - 1e-9  # float slack: 0.53 - 0.52 is not above 0.01


def _by_threat_model(strongest: pd.DataFrame) -> Iterable[pd.DataFrame]:
    for _, group in strongest.groupby(["norm", "eps_key"], sort=True):
        yield group.set_index("attack").sort_index()


def _contest(strongest: pd.DataFrame, suspects: Sequence[str], reference: Sequence[str],
             suspect_label: str, reference_label: str, *, tolerance: float | None = None,
             consequence: str) -> Iterable[_Finding]:
    """Each ``suspects`` attack against the ``reference`` attacks at each threat model
    holding both: a finding when the suspect is lower than every reference attack by more
    than chance allows (:func:`_gap`; or ``tolerance``, where larger). The reference
    closest to the suspect speaks for them, and the suspect furthest below its reference
    for the threat model. ``value`` is the reference's robust accuracy minus the
    suspect's."""
    for group in _by_threat_model(strongest):
        sus, ref = group[group.index.isin(suspects)], group[group.index.isin(reference)]
        if sus.empty or ref.empty:
            continue
        worst = None
        for s_name, s in sus.iterrows():
            closest = min(((r_name, _gap(s, r, s_name, r_name, tolerance=tolerance))
                           for r_name, r in ref.iterrows() if r_name != s_name),
                          key=lambda pair: pair[1].excess, default=None)
            if closest is not None and (worst is None or closest[1].excess > worst[2].excess):
                worst = (s_name, *closest)
        if worst is None:
            continue
        s_name, r_name, g = worst
        relation = "<" if g.gap > 0 else ">="
        s = group.loc[s_name]
        detail = (f"{suspect_label}{s_name} {g.first:.3f} {relation} {reference_label}"
                  f"{r_name} {g.second:.3f} at {s['norm']} eps={format_eps(s['eps'])} "
                  f"{g.numbers}")
        if g.excess > 0:
            detail += f": {consequence}"
        yield _Finding(g.excess, g.gap, detail)


def _blackbox_beats_whitebox(strongest: pd.DataFrame) -> Iterable[_Finding]:
    """AutoAttack ``check_square_sr``; Athalye et al. 2018 §3.4 ("black-box attacks are
    better than white-box attacks" is a sign of obfuscated gradients): Square, which never
    sees a gradient, finding more than every white-box attack means the gradients mislead.

    On the fashion-mnist grid Square runs on 500 points (seed 0) against white-box attacks
    on 500 to 1,000, so the two are paired on Square's 500 points and the margin is
    :func:`paired_margin`'s: 0.010 to 0.036 for 5 to 80 points the two disagree on. Two
    attacks at robust accuracy ~0.5 that disagree on 4% of the points (d = 20) get 0.016,
    where the unpaired margin (two binomial errors) was 0.045; at 0.1 or 0.9 it was
    0.027, at 0.3 or 0.7 0.041: of 20 disagreements Square may break 14 that the white-box
    attack did not (gap 0.016) and pass, and fails at 15 (gap 0.020)."""
    return _contest(strongest, [BLACK_BOX], WHITE_BOX, "", "best white-box ",
                    consequence="gradient masking: white-box attacks overestimate robustness")


def _one_step_beats_iterative(strongest: pd.DataFrame) -> Iterable[_Finding]:
    """Carlini et al. 2019, "verify iterative attacks perform better than single-step
    attacks"; Athalye et al. 2018 §3.4: a single step beating many steps of the same
    gradient means the iterations are stuck (masked or badly configured)."""
    return _contest(strongest, ONE_STEP, ITERATIVE, "one-step ", "best iterative ",
                    consequence="iterative attacks are stuck (gradient masking or a bad step size)")


def _autoattack_gap(strongest: pd.DataFrame, gap: float) -> Iterable[_Finding]:
    """Croce & Hein 2020 found AutoAttack lowering the reported robust accuracy of most
    defenses they re-evaluated: AutoAttack far below every other attack means those attacks,
    and any leaderboard column using them, overestimate robustness. Paired on the points
    AutoAttack evaluated where both rows carry per-point bits; the gap must also exceed
    ``gap``."""
    others = strongest.loc[strongest["attack"] != ENSEMBLE, "attack"].unique().tolist()
    return _contest(strongest, [ENSEMBLE], others, "", "best other attack ", tolerance=gap,
                    consequence="the other attacks overestimate robustness")


def _sweep_points(config) -> str | None:
    if not isinstance(config, str):
        return None
    try:
        return json.loads(config).get("sweep_points")
    except (ValueError, AttributeError):
        return None


def independent(done: pd.DataFrame) -> pd.Series:
    """Rows that attacked every clean-correct point at their own ε: the grid's attacks (one
    cell each) and sweep rows marked ``"sweep_points": "independent"`` in attack_config.
    Sweeps written before attacked at each ε only the points still robust at the ε before
    it: monotone by construction, so no evidence either way."""
    if "sweep" not in done:
        return pd.Series(True, index=done.index)
    configs = (done["attack_config"] if "attack_config" in done
               else pd.Series(None, index=done.index, dtype=object))
    return done["sweep"].isna() | (configs.map(_sweep_points) == "independent")


def _eps_monotone(done: pd.DataFrame) -> Iterable[_Finding]:
    """Carlini et al. 2019, "verify increasing the perturbation budget strictly increases
    attack success rate": the ε-balls are nested, so one attack's robust accuracy cannot
    rise with ε beyond noise. Only independent evaluations are judged (:func:`independent`:
    the grid's attacks, and sweeps that evaluate each radius anew, at three radii or more);
    rows are grouped by attack, norm, steps and restarts, so that a stronger setting at a
    larger ε is not mistaken for a rise. Every pair of radii in a group is compared, point
    by point where both rows carry bits: a point robust at the larger ε but broken at the
    smaller one is a rise, and the sign test (:func:`paired_margin`) says whether the rises
    outnumber the falls by more than chance."""
    done = done[independent(done)]
    keys = ["attack", "norm", *[c for c in ("steps", "restarts") if c in done]]
    for _, group in done.groupby(keys, dropna=False, sort=True):
        group = group.sort_values(["eps", "robust_acc"], kind="stable")
        records = group.to_dict("records")
        for i, low in enumerate(records):
            for high in records[i + 1:]:
                if high["eps_key"] <= low["eps_key"]:
                    continue
                g = _gap(low, high, f"eps={format_eps(low['eps'])}",
                         f"eps={format_eps(high['eps'])}", gap_name="rise")
                detail = (f"{low['attack']} robust acc {g.first:.3f} at {low['norm']} "
                          f"eps={format_eps(low['eps'])}, {g.second:.3f} at eps="
                          f"{format_eps(high['eps'])} {g.numbers}")
                if g.excess > 0:
                    detail += ": robust accuracy rises with eps, so the attack fails at larger eps"
                yield _Finding(g.excess, g.gap, detail)


# --- running them on a run -------------------------------------------------------------------

# uncounted_work: a sandboxed run may use this many times the CPU seconds per FLOP of the
# slowest trusted run on the same setup (plus its measured start-up, plus SLACK seconds)
# before its CPU time counts as work its FLOPs do not explain.
UNCOUNTED_MARGIN = 1.5
UNCOUNTED_SLACK_S = 0.5


def cost_checks(run_id: str, runs: pd.DataFrame) -> list[Row]:
    """``uncounted_work``: the CPU time the kernel counted for a sandboxed run's training
    process (every thread; no other process can start there) against what its counted
    FLOPs explain, calibrated on the board's trusted runs (built-in methods, not
    submissions) of the same dataset, arch, device, threads and execution settings:
    the composition's base objective's own runs where the board has them, else all of
    them, at the slowest rate any of them ran. Work in numpy, in a thread the meter does
    not see, or behind a paused meter shows up here. No row when the run was not
    sandboxed, or no trusted run to calibrate on exists."""
    if runs.empty or "train_cpu_seconds" not in runs:
        return []
    mine = runs[runs["run_id"] == run_id]
    if mine.empty:
        return []
    run = mine.iloc[-1]
    # train_flops is the sandboxed process's own report: 0 (a meter made to read nothing)
    # is judged like any other count, against the CPU time the kernel measured
    if run.get("sandbox") != "bwrap" or pd.isna(run.get("train_cpu_seconds")) \
            or pd.isna(run.get("train_flops")):
        return []
    setup = ["dataset", "arch", "device", "threads", "precision", "channels_last", "compiled"]
    same = runs[(runs["status"] == "ok") & (runs["sandbox"] == "bwrap")
                & runs["train_cpu_seconds"].notna() & (runs["train_flops"] > 0)
                & runs["submission_id"].isna()]
    for col in setup:
        same = same[same[col].astype(str) == str(run[col])]
    if same.empty:
        return []
    base = str(run["method_config"] and json.loads(run["method_config"])["name"]).split("+")[0]
    names = same["method_config"].map(lambda c: json.loads(c)["name"])
    ref = same[names == base] if (names == base).any() else same
    startup = float(run.get("startup_cpu_seconds") or 0.0)
    ref_startup = ref["startup_cpu_seconds"].fillna(0.0) if "startup_cpu_seconds" in ref else 0.0
    rate = float(((ref["train_cpu_seconds"] - ref_startup).clip(lower=0)
                  / ref["train_flops"]).max())
    allowed = startup + UNCOUNTED_MARGIN * rate * float(run["train_flops"]) + UNCOUNTED_SLACK_S
    cpu = float(run["train_cpu_seconds"])
    which = base if ref is not same else "every trusted run"
    detail = (f"{cpu:.1f} CPU s for {float(run['train_flops']):.3g} FLOPs; {which} "
              f"({len(ref)} run{'s' * (len(ref) != 1)}) ran at most {rate * 1e9:.3g} s/GFLOP, "
              f"so at most {allowed:.1f} s is explained (start-up {startup:.1f} s, "
              f"x{UNCOUNTED_MARGIN} margin, +{UNCOUNTED_SLACK_S:g} s)")
    return [_row("uncounted_work", cpu <= allowed, detail, cpu - allowed)]


def run_checks(train, robustness: pd.DataFrame, results: Path, *, n_eval: int,
               model_rows: list[dict] | None = None, device: torch.device | None = None,
               large_eps: LargeEpsSpec | None = DEFAULT_LARGE_EPS) -> list[dict]:
    """``checks`` rows of one run: model-level checks (computed once, then reused through
    ``model_rows``) with the large-ε attack (``large_eps``, the grid's
    ``checks.large_eps``; run once too, and on its own where stored model rows predate
    it), result-level checks over its current robustness rows, and the cost check of its
    training process against the board's trusted runs."""
    rows = None if model_rows is None else list(model_rows)
    need_large = large_eps is not None and (
        rows is None or not any(r["check"] == "large_eps_zero" for r in rows))
    if rows is None or need_large:
        with evaluation_of(train, results, n_eval, device) as ev:
            if rows is None:
                rows = model_checks(ev.model, ev.x, ev.y, norm=train.threat_norm,
                                    eps=train.threat_eps, seed=train.seed)
            if need_large:
                rows += large_eps_rows(ev.model, ev.x, ev.y, large_eps, train.threat_norm,
                                       seed=train.seed)
    model_rows = [{**r, "kind": "model"} for r in rows]
    result_rows = [{**r, "kind": "result"} for r in result_checks(robustness)]
    cost_rows = [{**r, "kind": "cost"}
                 for r in cost_checks(train.key, store.read_table(results, "runs"))]
    return [{**r, "run_id": train.key, "created_at": now()}
            for r in model_rows + result_rows + cost_rows]
