"""EWS: enhance weak subnets by distilling the full network into them.

Source: Guo, Stutz & Schiele, "Improving Robustness by Enhancing Weak Subnets", ECCV 2022,
§3 (docs/methods.md#ews), plus the authors' code (github.com/guoyongcs/EWS:
``search.py``, ``train_cifar.py``, ``train_adv_at.py``, ``train_adv_trades.py``).

Subnets (§3.1). A subnet keeps ⌈ρ·n⌉ of the n paths of each residual block and ⌈ρ·C⌉ of
the C channels of its inner layer, which (as in the authors' code) is the input of the
block's ``conv2``. The stem, the shortcuts and the classifier are never masked, so a block
has one maskable path, the residual branch, and ⌈ρ·1⌉ = 1 keeps it: only channels are
chosen. A subnet runs on the shared weights: a forward pre-hook on each ``conv2`` multiplies
its input by a 0/1 channel mask. Nothing is copied, and a masked pass costs (and is charged)
as much as a full one. In subnet passes BatchNorm normalises with batch statistics but
updates no running statistic (the authors set BN momentum to 0 for them).

Training (§3.3, Algorithm 1). Every step draws a subnet α and adds λ·KL(M(x) ‖ α(x)) to the
base's loss: the full network's logits (the base's own, reused, detached) teach the subnet
at temperature 1, KL summed over classes and averaged over the batch. Under adversarial
bases x is the base's x_adv (§3.4); under TRADES, which trains on clean and adversarial
inputs, the term is taken on both.

Subnet choice. ``ews`` draws α from a controller π_θ (§3.2): an LSTM cell that, block by
block, draws the k kept channels one by one without replacement from a softmax over the
block's channels (a Plackett–Luce draw). Every K steps (Algorithm 1, lines 4–7) it takes a
REINFORCE step on the current batch (x_adv under AT) with reward R = −(subnet accuracy), a
moving-average baseline and an entropy bonus, so it learns to propose subnets of low
accuracy. The ablations of §5.1: ``ews_random`` draws channels uniformly at random (no
controller); ``ews_l1`` keeps the channels of smallest L1 weight norm.

Options (default — source):
- ``preset`` "paper" — "paper": λ=1, ρ=0.7, no label smoothing (paper §4.1 and Fig. 6;
  ``train_cifar.py``); "adversarial": λ=0.1, ρ=0.9, label smoothing 0.1 (the authors'
  ``train_adv_at.py`` and ``train_adv_trades.py``).
- ``lam`` None = preset — λ, weight of the KL term.
- ``rho`` None = preset — ρ, fraction of channels (and paths) a subnet keeps.
- ``label_smoothing`` None = preset — when > 0 the base's cross-entropy is label-smoothed
  (authors' adversarial scripts); EWS then owns the composition's criterion.
- ``clean_term`` True — under TRADES also distil on the clean inputs (paper §3.4). Both
  terms weigh λ; the authors' TRADES script also multiplies the adversarial one by
  TRADES' β, which ours does not.
``ews`` only:
- ``interval`` 10 — K, steps between controller updates (paper §5.1, Fig. 5).
- ``samples`` 1 — subnets per controller update (Algorithm 1's C; the authors' code: 1).
- ``hidden`` 100 — LSTM hidden size (authors' code, ``controller_hid``).
- ``controller_lr`` 3e-4 — Adam learning rate; betas (0.5, 0.999) (authors' code).
- ``entropy_coeff`` None — entropy bonus; None = 0.01 atop an adversarial base, else 0.005
  (authors' ``train_adv_*.py`` / ``train_cifar.py``).
- ``baseline_decay`` 0.99 — decay of the moving-average reward baseline (authors' code).
- ``grad_clip`` 3 — gradient-norm clip of the controller update (authors' code).
``ews_l1`` only:
- ``l1_keep`` "smallest" — paper §5.1: L1 selection "chooses the channels/paths with
  lowest L1-norm of weights", the weaker subnet; "largest" keeps the strongest channels
  (what magnitude pruning would keep).

Choices of ours, where paper and code are silent or loose:
- The controller scores its draw with the exact Plackett–Luce log-probability of the
  ordered draw (the authors' code sums the picks' log-probabilities under the full softmax,
  which is not the probability of a draw without replacement). Its entropy term is the sum
  of each pick's conditional entropy, an unbiased estimate of the draw's entropy.
- The baseline is 0 until the first reward (as the authors start it), then the
  bias-corrected moving average of the rewards.
- ⌈ρ·n⌉ is taken with a 1e-9 tolerance so that float error (0.7·10 = 7.000000000000001)
  does not keep an extra channel; at least one channel is kept.
- Subnets are drawn from a generator of EWS's own, seeded from the run seed, so the base's
  random stream (batch order, attack starts) is the one it has without EWS.

Logged per epoch (history ``extra``): ``ews_subnet_acc`` and ``ews_kl``, the distilled
subnets' mean accuracy and KL on the distillation input (x_adv under AT); ``ews`` also logs
``ews_reward`` (mean reward of the epoch's controller updates) and ``ews_baseline``.
Recorded per epoch (``mechanism``, event ``subnets``): the subnet choices — draws, distinct
subnets, the most drawn one's count, how often each channel was kept (and, for ``ews``,
the controller updates). EWS distils at every step, so no budget keeps it from acting.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bench.api import (
    METHODS,
    Batch,
    MethodConfig,
    Modifier,
    TrainContext,
    residual_archs,
    residual_blocks,
)

PRESETS: dict[str, dict[str, float]] = {
    "paper": {"lam": 1.0, "rho": 0.7, "label_smoothing": 0.0},
    "adversarial": {"lam": 0.1, "rho": 0.9, "label_smoothing": 0.1},
}
# Added to the run seed for EWS's own generator: subnet draws leave the base's stream alone.
_SEED_OFFSET = 0xE5

# The input channels kept in each block's conv2, in block order: one subnet.
Subnet = list[torch.Tensor]


class SubnetConfig(MethodConfig):
    preset: Literal["paper", "adversarial"] = Field(
        "paper", description="paper: λ=1, ρ=0.7 (§4.1); adversarial: λ=0.1, ρ=0.9, label "
        "smoothing 0.1 (authors' AT scripts)")
    lam: float | None = Field(None, ge=0, description="λ, weight of the KL term; None = preset")
    rho: float | None = Field(None, gt=0, le=1,
                              description="ρ, fraction of channels kept; None = preset")
    label_smoothing: float | None = Field(
        None, ge=0, lt=1, description="label smoothing of the base's CE; None = preset")
    clean_term: bool = Field(True, description="under TRADES also distil on clean inputs (§3.4)")

    @model_validator(mode="before")
    @classmethod
    def _from_preset(cls, data: Any) -> Any:
        # Fill the unset options from the preset so the recorded config shows the values used.
        if isinstance(data, dict):
            preset = PRESETS.get(data.get("preset", "paper"), {})
            data = {**data, **{k: v for k, v in preset.items() if data.get(k) is None}}
        return data


class EWSConfig(SubnetConfig):
    interval: int = Field(10, ge=1, description="K, steps between controller updates (§5.1)")
    samples: int = Field(1, ge=1, description="subnets per controller update (authors' code: 1)")
    hidden: int = Field(100, ge=1, description="controller LSTM hidden size (authors' code)")
    controller_lr: float = Field(3e-4, gt=0, description="controller Adam LR (authors' code)")
    entropy_coeff: float | None = Field(
        None, ge=0, description="entropy bonus; None = 0.01 atop adversarial bases, else 0.005")
    baseline_decay: float = Field(0.99, ge=0, lt=1,
                                  description="reward baseline decay (authors' code)")
    grad_clip: float = Field(3.0, gt=0, description="controller grad-norm clip (authors' code)")


class L1Config(SubnetConfig):
    l1_keep: Literal["smallest", "largest"] = Field(
        "smallest", description="keep the channels of smallest (paper §5.1) or largest L1 norm")


# -- subnets on shared weights -------------------------------------------------------------

def kept(n: int, rho: float) -> int:
    """⌈ρ·n⌉, at least 1; the tolerance stops float error from keeping one more."""
    return max(1, math.ceil(rho * n - 1e-9))


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm inside normalises as usual but updates no running statistic.

    With ``track_running_stats`` off, a train-mode BN hands F.batch_norm no running buffers
    (nor counts the batch), and an eval-mode BN still uses them. Saving and restoring the
    buffers instead would bump their autograd version and break the pass's backward.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for bn in bns:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn in bns:
            bn.track_running_stats = True


def _channel_mask(conv: nn.Conv2d, keep: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(conv.in_channels, device=keep.device)
    return mask.index_fill_(0, keep, 1.0).view(1, -1, 1, 1)


@contextmanager
def subnet_active(model: nn.Module, blocks: Sequence[nn.Module], subnet: Subnet) -> Iterator[None]:
    """Forward passes of ``model`` inside run ``subnet``: each block's conv2 sees only its
    kept input channels, and BatchNorm running statistics stay as they were."""
    handles = []
    for block, keep in zip(blocks, subnet, strict=True):
        mask = _channel_mask(block.conv2, keep)
        handles.append(block.conv2.register_forward_pre_hook(
            lambda _mod, args, mask=mask: (args[0] * mask.to(args[0].dtype), *args[1:])))
    try:
        with frozen_bn_stats(model):
            yield
    finally:
        for handle in handles:
            handle.remove()


# -- the controller π_θ --------------------------------------------------------------------

def gumbel_top_k(logits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k indices drawn one by one without replacement from softmax(logits), in draw order:
    the top k of Gumbel-perturbed logits are such a draw (Plackett–Luce)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_min_(1e-20)
    return torch.topk(logits - torch.log(-torch.log(u)), k).indices


def plackett_luce(logits: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability, entropy) of drawing ``order`` from softmax(``logits``) one pick at a
    time without replacement. Pick i is a softmax over the channels not yet picked; its log
    term and its conditional entropy come from row i of a (k, C) masked matrix."""
    picked = F.one_hot(order, logits.numel()).bool()  # (k, C)
    taken = (picked.cumsum(0) > 0) & ~picked  # row i: channels picked before pick i
    logp = logits.expand(len(order), -1).masked_fill(taken, float("-inf")).log_softmax(1)
    log_prob = logp.gather(1, order[:, None]).sum()
    entropy = -(logp.exp() * logp.masked_fill(taken, 0.0)).sum()
    return log_prob, entropy


class Controller(nn.Module):
    """π_θ: an LSTM cell that, block by block, draws the channels a subnet keeps (§3.2).

    Block b's step reads the embedding of block b−1's picks (their mean, as in the authors'
    code) and scores block b's C_b channels with a linear head; the first step reads a
    constant zero input.
    """

    def __init__(self, widths: Sequence[int], hidden: int = 100):
        super().__init__()
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in widths)
        self.embeds = nn.ModuleList(nn.Embedding(c, hidden) for c in widths)
        for head in self.heads:
            nn.init.zeros_(head.bias)  # start near uniform over channels
        for embed in self.embeds:
            # N(0, 1) embeddings would swamp the cell's ±0.1 weights; match their scale.
            nn.init.uniform_(embed.weight, -0.1, 0.1)
        self.register_buffer("start", torch.zeros(1, hidden))

    def forward(self, keep: Sequence[int], generator: torch.Generator, score: bool = True,
                ) -> tuple[Subnet, torch.Tensor, torch.Tensor]:
        """Draw one subnet: (kept channels per block, log π_θ(draw), entropy estimate).
        With ``score`` False the last two are zeros (a draw without the policy gradient)."""
        inp, state = self.start, None
        log_prob = entropy = self.start.new_zeros(())
        subnet = []
        for head, embed, k in zip(self.heads, self.embeds, keep, strict=True):
            state = self.cell(inp, state)
            logits = head(state[0])[0]
            order = gumbel_top_k(logits.detach(), k, generator)
            if score and k < logits.numel():  # keeping all C channels is no choice
                lp, ent = plackett_luce(logits, order)
                log_prob, entropy = log_prob + lp, entropy + ent
            subnet.append(order)
            inp = embed(order).mean(0, keepdim=True)
        return subnet, log_prob, entropy


class MovingBaseline:
    """Moving average of the rewards (REINFORCE's baseline): 0 before the first reward,
    then the bias-corrected exponential average, so early values are not pulled to 0."""

    def __init__(self, decay: float):
        self.decay, self.ema, self.count = decay, 0.0, 0

    @property
    def value(self) -> float:
        return self.ema / (1 - self.decay ** self.count) if self.count else 0.0

    def update(self, reward: float) -> None:
        self.ema = self.decay * self.ema + (1 - self.decay) * reward
        self.count += 1


# -- the modifiers -------------------------------------------------------------------------

def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)), temperature 1, batch mean; teacher detached."""
    return F.kl_div(F.log_softmax(student, 1), F.softmax(teacher.detach(), 1),
                    reduction="batchmean")


def input_channel_l1(conv: nn.Conv2d) -> torch.Tensor:
    """L1 norm of the weights that read each input channel of ``conv`` (grouped convs too:
    input channel c is read only by the output channels of its group)."""
    w = conv.weight.detach().abs()
    groups = conv.groups
    per_group = w.reshape(groups, w.shape[0] // groups, w.shape[1], -1).sum(dim=(1, 3))
    return per_group.flatten()


class SubnetDistillation(Modifier):
    """Shared by ews, ews_random and ews_l1: each step, distil the full net into a subnet.

    Subclasses say which subnet (``propose``); ``ews`` also updates its controller first.
    """

    Config = SubnetConfig
    replaces_criterion = True  # label smoothing (adversarial preset)
    citation = "Guo, Stutz & Schiele, ECCV 2022"

    @classmethod
    def check_model(cls, model: nn.Module) -> str | None:
        if residual_blocks(model):
            return None
        return (f"{cls.name} needs residual blocks to take subnets of (archs with them: "
                f"{', '.join(residual_archs())}); this model has none")

    def criterion(self, ctx: TrainContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        smoothing = self.config.label_smoothing
        if not smoothing:
            return None
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none",
                                                 label_smoothing=smoothing)

    def setup(self, model: nn.Module, *, device: torch.device, seed: int,
              adversarial: bool = False) -> None:
        """Find the blocks and widths; tests call this directly, training via on_train_start."""
        problem = self.check_model(model)
        if problem is not None:
            raise ValueError(problem)
        self.model = model
        self.blocks = residual_blocks(model)
        self.widths = [b.conv2.in_channels for b in self.blocks]
        self.keep = [kept(c, self.config.rho) for c in self.widths]
        self.generator = torch.Generator(device=device).manual_seed(seed + _SEED_OFFSET)
        self.device = device
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._choices: dict[tuple, int] = {}  # this epoch's subnets: how often each was drawn

    def on_train_start(self, ctx: TrainContext) -> None:
        self.setup(ctx.model, device=ctx.device, seed=ctx.seed, adversarial=ctx.base_adversarial)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self._sums, self._counts, self._choices = {}, {}, {}

    def on_epoch_end(self, ctx: TrainContext, metrics: dict) -> None:
        ctx.record_mechanism(self.name, "subnets", len(self._choices), **self.choice_summary())

    def choice_summary(self) -> dict:
        """This epoch's subnet choices: draws, distinct subnets, the most frequent one's
        count, and per block how often each channel was kept (one list per block)."""
        counts = [[0] * width for width in self.widths]
        for subnet, times in self._choices.items():
            for block, kept_channels in zip(counts, subnet):
                for channel in kept_channels:
                    block[channel] += times
        return {"draws": sum(self._choices.values()), "distinct": len(self._choices),
                "most_drawn": max(self._choices.values(), default=0),
                "kept": self.keep, "channel_counts": counts}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}  # the subnet draws' own stream

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())

    def propose(self) -> Subnet:
        raise NotImplementedError

    def before_distill(self, ctx: TrainContext, batch: Batch) -> None:
        """Runs each step before the subnet is drawn (``ews`` updates its controller)."""

    @contextmanager
    def active(self, subnet: Subnet) -> Iterator[None]:
        with subnet_active(self.model, self.blocks, subnet):
            yield

    def extra_loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        self.before_distill(ctx, batch)
        subnet = self.propose()
        key = tuple(tuple(sorted(keep.tolist())) for keep in subnet)
        self._choices[key] = self._choices.get(key, 0) + 1
        total = None
        for i, (x, teacher) in enumerate(self.distill_pairs(batch)):
            # x is detached: the subnet term trains weights only (Free-AT reads δ's gradient).
            with self.active(subnet):
                student = ctx.model(x.detach())
            kl = kl_to_teacher(student, teacher)
            total = kl if total is None else total + kl
            if i == 0:
                acc = (student.argmax(1) == batch.y).float().mean().item()
                self.record(ctx, ews_subnet_acc=acc, ews_kl=kl.item())
        return self.config.lam * total

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        # Subnets mask channels (a multiply): every subnet costs a full pass.
        return ()

    def distill_pairs(self, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(input, teacher logits) pairs, the base's logits reused as teachers. TRADES leaves
        its clean logits in ``batch.logits`` and the adversarial ones in
        ``extra["logits_adv"]``; other bases' logits are on x_adv when they made one."""
        logits_adv = batch.extra.get("logits_adv")
        if logits_adv is not None:
            pairs = [(batch.x_adv, logits_adv)]
            if self.config.clean_term:
                pairs.append((batch.x, batch.logits))
            return pairs
        if batch.logits is None:
            raise ValueError(f"{self.name}: the base left no logits in the batch to distil from")
        return [(batch.x_adv if batch.x_adv is not None else batch.x, batch.logits)]

    def record(self, ctx: TrainContext, **values: float) -> None:
        """Epoch means of ``values`` into this epoch's history row (re-logged each step,
        so the row holds the mean over the whole epoch)."""
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
        ctx.log(**{k: total / self._counts[k] for k, total in self._sums.items()})


@METHODS.register()
class EWS(SubnetDistillation):
    """EWS: distil into weak subnets an RL controller finds (λ=1, ρ=0.7, K=10)."""

    name = "ews"
    Config = EWSConfig

    def setup(self, model: nn.Module, *, device: torch.device, seed: int,
              adversarial: bool = False) -> None:
        super().setup(model, device=device, seed=seed, adversarial=adversarial)
        cfg = self.config
        # Initialise from the run seed without moving the global stream the run goes on with.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(self.widths, cfg.hidden).to(device)
        self.policy_optimizer = torch.optim.Adam(self.controller.parameters(), lr=cfg.controller_lr,
                                                 betas=(0.5, 0.999))
        self.baseline = MovingBaseline(cfg.baseline_decay)
        self._updates = 0  # controller updates this epoch
        self.entropy_coeff = cfg.entropy_coeff
        if self.entropy_coeff is None:
            self.entropy_coeff = 0.01 if adversarial else 0.005

    def state_dict(self) -> dict:
        b = self.baseline
        return {**super().state_dict(), "controller": self.controller.state_dict(),
                "policy_optimizer": self.policy_optimizer.state_dict(),
                "baseline": {"ema": b.ema, "count": b.count}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.baseline.ema, self.baseline.count = state["baseline"]["ema"], state["baseline"]["count"]

    def propose(self) -> Subnet:
        with torch.no_grad():
            return self.controller(self.keep, self.generator, score=False)[0]

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return (ctx.step % self.config.interval == 0,)  # controller steps score subnets

    def before_distill(self, ctx: TrainContext, batch: Batch) -> None:
        if ctx.step % self.config.interval:
            return
        # The reward batch is the one the base trained on: x_adv under AT (§3.4).
        x = batch.x_adv if batch.x_adv is not None else batch.x

        @torch.no_grad()
        def accuracy(subnet: Subnet) -> float:
            with self.active(subnet):  # these passes run inside the step: metered
                return (ctx.model(x).argmax(1) == batch.y).float().mean().item()

        reward = self.policy_step(accuracy)
        self._updates += 1
        self.record(ctx, ews_reward=reward, ews_baseline=self.baseline.value)

    def on_epoch_start(self, ctx: TrainContext) -> None:
        super().on_epoch_start(ctx)
        self._updates = 0

    def choice_summary(self) -> dict:
        return {**super().choice_summary(), "controller_updates": self._updates}

    def policy_step(self, accuracy: Callable[[Subnet], float]) -> float:
        """One REINFORCE step of π_θ toward subnets of low ``accuracy``; the mean reward."""
        losses, rewards = [], []
        baseline = self.baseline.value
        for _ in range(self.config.samples):
            subnet, log_prob, entropy = self.controller(self.keep, self.generator)
            reward = -accuracy(subnet)
            losses.append(-(reward - baseline) * log_prob - self.entropy_coeff * entropy)
            rewards.append(reward)
        self.policy_optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).mean().backward()
        nn.utils.clip_grad_norm_(self.controller.parameters(), self.config.grad_clip)
        self.policy_optimizer.step()
        for reward in rewards:
            self.baseline.update(reward)
        return sum(rewards) / len(rewards)


@METHODS.register()
class EWSRandom(SubnetDistillation):
    """EWS ablation: distil into uniformly random subnets (no controller; paper §5.1)."""

    name = "ews_random"

    def propose(self) -> Subnet:
        return [torch.randperm(c, generator=self.generator, device=self.device)[:k]
                for c, k in zip(self.widths, self.keep)]


@METHODS.register()
class EWSL1(SubnetDistillation):
    """EWS ablation: distil into the subnet of smallest-L1-norm channels (paper §5.1)."""

    name = "ews_l1"
    Config = L1Config

    def propose(self) -> Subnet:
        # Recomputed every step: the weights move, so does the ranking.
        largest = self.config.l1_keep == "largest"
        return [torch.topk(input_channel_l1(b.conv2), k, largest=largest).indices
                for b, k in zip(self.blocks, self.keep)]
