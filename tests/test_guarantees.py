"""The probe-core guarantee: after any capture, stream, intervention, ablation or attribution --
including one whose body raises, or whose forward raises while our hooks are live -- the model has
exactly the hooks it had before, the same ``training`` flag on every module, the same
``requires_grad`` flags, the same Parameter/buffer objects and a bit-identical ``state_dict``
(compared byte-wise by ``aeprobe.state.diff``; no tolerance: "bit-identical" is the claim).

Checked with hypothesis over random Sequential MLPs and conv nets (random depth/width, with and
without biases, optional BatchNorm and Dropout, random nesting, random train/eval flags per module,
random frozen parameters, pre-existing user hooks), and on a small torchvision-style ResNet with
BatchNorm in *train* mode (a forward then updates running statistics, which our context managers
restore: ``restore_buffers=True`` by default for every probe; ``freeze``, meant to wrap training,
defaults to False and is exercised here with ``restore_buffers=True`` -- its default behaviour is
tested in test_ablation.py).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.ablation import bias_parameters, freeze, remove_biases, replace_weights, zero_weights
from aeprobe.attribution import attribute_code
from aeprobe.hooks import Variance, capture, intervene, output_at, stream
from aeprobe.activation_patching import patching
from aeprobe.state import ModelGuard, assert_unchanged, diff, snapshot


# random train/eval flags and tiny random nets: the tools rightly warn about train-mode Dropout/BatchNorm
# and about patching metrics that do not move (both tested elsewhere)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*in training mode:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:patching.*undefined:RuntimeWarning"),
]


class Boom(Exception):
    """Raised on purpose, by the body or by a user hook during forward."""


# ----------------------------------------------------------------------------- random architectures
def _nest(layers: list[nn.Module], cuts: list[int]) -> nn.Sequential:
    """Group consecutive layers into nested Sequentials at the given cut points."""
    if not cuts:
        return nn.Sequential(*layers)
    groups, start = [], 0
    for c in sorted(set(cuts)) + [len(layers)]:
        if c > start:
            chunk = layers[start:c]
            groups.append(nn.Sequential(*chunk) if len(chunk) > 1 else chunk[0])
            start = c
    return nn.Sequential(*groups)


@st.composite
def architectures(draw):
    kind = draw(st.sampled_from(["mlp", "conv"]))
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 5), min_size=depth, max_size=depth))
    biases = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    norms = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    act = draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.LeakyReLU]))
    dropout = draw(st.booleans())
    layers: list[nn.Module] = []
    if kind == "mlp":
        in_shape, c = (3,), 3
        for w, b, n in zip(widths, biases, norms):
            layers.append(nn.Linear(c, w, bias=b))
            if n:
                layers.append(nn.BatchNorm1d(w))
            layers.append(act())
            c = w
    else:
        in_shape, c = (2, 6, 6), 2
        for w, b, n in zip(widths, biases, norms):
            layers.append(nn.Conv2d(c, w, 3, padding=1, bias=b))
            if n:
                layers.append(nn.BatchNorm2d(w))
            layers.append(act())
            c = w
        layers.append(nn.Flatten())
        c = c * 36
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(c, draw(st.integers(1, 3)), bias=draw(st.booleans())))
    cuts = draw(st.lists(st.integers(1, max(1, len(layers) - 1)), max_size=3))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = _nest(layers, cuts)
    return model, in_shape


class BasicBlock(nn.Module):
    """torchvision-style residual block: conv-bn-relu-conv-bn + (projected) shortcut, relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))  # self.relu is called twice per forward
        return self.relu(self.bn2(self.conv2(out)) + idt)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(4, 4, 1))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------- the operations
OPS = ["capture", "capture_grad", "stream", "intervene", "remove_biases", "zero_weights", "replace_weights",
       "freeze", "attribution",
       # the options of the hook core: per-call targeting, gradients, early stop, modes, select, patching
       "capture_calls", "capture_grads", "capture_stop", "capture_eval", "stream_select", "intervene_calls",
       "patching"]
EVALS = [None, True, False]


def _module_names(model):
    return [n for n, _ in model.named_modules()]


def _with_weight(model):
    return [n for n, m in model.named_modules() if isinstance(m._parameters.get("weight"), torch.Tensor)]


def _run(op: str, model: nn.Module, x: torch.Tensor, rnd, raise_in_body: bool):
    """Run ``op`` on ``model``; return True when the expected exception occurred."""
    names = rnd.sample(_module_names(model), k=rnd.randint(1, min(3, len(_module_names(model)))))

    def body():
        out = model(x)
        if out.requires_grad:
            out.square().sum().backward()
        if raise_in_body:
            raise Boom("body")

    if op == "patching":
        def metric(y):
            if raise_in_body:
                raise Boom("metric")
            return y[0].square().sum()  # not symmetric in the samples (corrupted = clean reversed)

        patching(model, x.detach(), x.detach().flip(0), names, metric, calls=rnd.choice(["last", "all", 0]),
                 batch_size=rnd.choice([None, 2, 100]), eval=rnd.choice(EVALS))
        return None
    if op == "capture_stop":
        if user_armed(model):  # the user's hook raises during forward: let the forward reach it
            names = names + [""]
        cm = capture(model, names, stop=True, calls=rnd.choice(["last", "all", 0]), inputs=rnd.random() < 0.5,
                     eval=rnd.choice(EVALS))
        with cm:
            if raise_in_body:
                raise Boom("body")  # (after the forward the block has ended: a stop skips the rest)
            model(x)
        return None
    if op == "attribution":
        method = rnd.choice(["integrated_gradients", "layer_conductance", "grad_x_activation"])
        leaves = [n for n, m in model.named_modules() if next(m.children(), None) is None]
        layer = None if method == "integrated_gradients" or rnd.random() < 0.5 else rnd.choice(leaves)
        attribute_code(model, x, unit=0, method=method, layer=layer, encoder="", n_steps=3)
        return None
    if op == "capture":
        cm = capture(model, names, inputs=rnd.random() < 0.5, calls=rnd.choice(["last", "all"]))
    elif op == "capture_grad":
        cm = capture(model, names, detach=False, clone=rnd.random() < 0.5)
    elif op == "stream":
        cm = stream(model, names, rnd.choice(["mean", "minmax", Variance()]))
    elif op == "intervene":
        cm = intervene(model, {n: (lambda out: out * 0.5) for n in names}, on=rnd.choice(["output", "input"]))
    elif op == "capture_calls":
        cm = capture(model, names, calls=rnd.choice(["last", "all", 0, [0], 1]), inputs=rnd.random() < 0.5,
                     clone=rnd.random() < 0.5, eval=rnd.choice(EVALS))
    elif op == "capture_grads":
        cm = capture(model, names, grads=True, detach=rnd.random() < 0.5, clone=rnd.random() < 0.5,
                     calls=rnd.choice(["last", "all", 0]), eval=rnd.choice(EVALS))
    elif op == "capture_eval":
        cm = capture(model, names, eval=rnd.choice(EVALS), inputs=rnd.random() < 0.5)
    elif op == "stream_select":
        cm = stream(model, names, rnd.choice(["mean", Variance()]), select=lambda out: out,
                    calls=rnd.choice(["all", "last", 0]), inputs=rnd.random() < 0.3, eval=rnd.choice(EVALS))
    elif op == "intervene_calls":
        cm = intervene(model, {n: (lambda out: out * 0.5) for n in names}, calls=rnd.choice([0, [0], "all"]),
                       select=rnd.choice([None, lambda out: out]), on=rnd.choice(["output", "input"]),
                       eval=rnd.choice(EVALS))
    elif op == "remove_biases":
        if not bias_parameters(model):
            with pytest.raises(ValueError, match="no bias"):
                with remove_biases(model):
                    pass
            body()  # still raise where the caller expects it (nothing of ours is live here)
            return None
        with_bias = [n for n in _module_names(model) if bias_parameters(model, n)]
        cm = remove_biases(model, None if rnd.random() < 0.5 else rnd.choice(with_bias))
    elif op == "zero_weights":
        cm = zero_weights(model, rnd.sample(_with_weight(model), k=1))
    elif op == "replace_weights":
        name = rnd.choice(_with_weight(model))
        w = model.get_submodule(name).weight
        cm = replace_weights(model, {name: torch.randn(w.shape)})
    elif op == "freeze":
        with_params = [n for n in _module_names(model) if any(True for _ in model.get_submodule(n).parameters())]
        cm = freeze(model, rnd.choice(with_params), restore_buffers=True)
    else:  # pragma: no cover
        raise AssertionError(op)
    with cm:
        body()
    return None


def _prepare(model: nn.Module, rnd) -> dict:
    """Random training flags, frozen params and user hooks (one of which raises when armed)."""
    for m in model.modules():
        m.train(rnd.random() < 0.6)
    for p in model.parameters():
        p.requires_grad_(rnd.random() < 0.8)
    state = {"armed": False, "calls": 0}

    def counting_hook(module, args, output):
        state["calls"] += 1

    def boom_hook(module, args):
        if state["armed"]:
            raise Boom("forward")

    mods = list(model.modules())
    rnd.choice(mods).register_forward_hook(counting_hook)
    rnd.choice(mods).register_forward_pre_hook(boom_hook)
    _ARMED[id(model)] = state
    return state


_ARMED: dict[int, dict] = {}


def user_armed(model) -> bool:
    state = _ARMED.get(id(model))
    return bool(state and state["armed"])


def _check(op: str, model: nn.Module, x: torch.Tensor, rnd) -> None:
    user = _prepare(model, rnd)
    for mode in ("clean", "raise_in_body", "raise_in_forward"):
        before = snapshot(model)
        if mode == "clean":
            _run(op, model, x, rnd, False)
        else:
            user["armed"] = mode == "raise_in_forward"
            if op == "attribution" and mode == "raise_in_body":
                user["armed"] = True  # attribution has no body: raise inside captum's forward instead
            with pytest.raises(Boom):
                _run(op, model, x, rnd, mode == "raise_in_body")
            user["armed"] = False
        problems = diff(before, snapshot(model))
        assert not problems, f"{op} ({mode}) left the model changed:\n" + "\n".join(problems)
    # the user's own hooks still fire
    calls = user["calls"]
    with torch.no_grad():
        model(x)
    assert user["calls"] == calls + 1


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=15)
@given(arch=architectures(), seed=st.integers(0, 2**31 - 1))
def test_guarantee_random_architectures(op, arch, seed):
    import random

    model, in_shape = arch
    rnd = random.Random(seed)
    x = torch.randn(4, *in_shape, generator=torch.Generator().manual_seed(seed % 2**16))
    if op == "attribution":
        x = x[:2]
    elif rnd.random() < 0.3:
        x.requires_grad_(True)
    _check(op, model, x, rnd)


@pytest.mark.parametrize("op", OPS)
def test_guarantee_resnet_in_train_mode(op):
    import random

    torch.manual_seed(0)
    model = TinyResNet().train()
    x = torch.randn(4, 1, 8, 8)
    rnd = random.Random(sum(map(ord, op)))
    _check(op, model, x, rnd)
    # train mode was really exercised: a plain forward does move the running stats, so restoring
    # them above was necessary (otherwise this test could not fail for BatchNorm)
    before = snapshot(model)
    model.train()(x)
    assert any("running_mean" in p or "num_batches_tracked" in p for p in diff(before, snapshot(model)))


def test_resnet_capture_all_modules_and_shared_relu():
    """The ResNet's ``relu`` runs several times per forward: calls='all' records each call."""
    torch.manual_seed(0)
    model = TinyResNet().train()
    before = snapshot(model)
    with capture(model, _module_names(model), calls="all") as acts:
        model(torch.randn(2, 1, 8, 8))
    assert_unchanged(model, before)
    assert len(acts["relu"]) == 1 and len(acts["layer1.0.relu"]) == 2 and len(acts["layer2.0.relu"]) == 2
    assert acts[""][0].shape == (2, 3)


def test_diff_detects_each_kind_of_change():
    """The checker itself must be able to fail (otherwise the guarantee tests prove nothing)."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    base = snapshot(model)
    assert diff(base, snapshot(model)) == []

    h = model[0].register_forward_hook(lambda *a: None)
    assert any("_forward_hooks" in p for p in diff(base, snapshot(model)))
    h.remove()
    model[1].eval()
    assert any("training '1'" in p for p in diff(base, snapshot(model)))
    model[1].train()
    model[0].bias.requires_grad_(False)
    assert any("requires_grad '0.bias'" in p for p in diff(base, snapshot(model)))
    model[0].bias.requires_grad_(True)
    old = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight[0, 0] += 1.0
    assert any("'0.weight'" in p for p in diff(base, snapshot(model)))
    with torch.no_grad():
        model[0].weight.copy_(old)
    assert diff(base, snapshot(model)) == []
    model[0].weight = nn.Parameter(old.clone())
    assert any("replaced" in p for p in diff(base, snapshot(model)))


def test_diff_distinguishes_negative_zero():
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.bias.fill_(0.0)
    base = snapshot(model)
    with torch.no_grad():
        model.bias.fill_(-0.0)
    assert torch.equal(model.bias, base.state["bias"])  # == cannot see it ...
    assert any("'bias'" in p for p in diff(base, snapshot(model)))  # ... the bit comparison does


# ----------------------------------------------------------------------------- a deep model, and the guard's cost model
def _deep_model(n_blocks: int) -> nn.Sequential:
    """3 modules per block (Sequential, Linear/BatchNorm, activation or Dropout), ~1000 modules in all."""
    blocks = []
    for i in range(n_blocks):
        if i % 3 == 0:
            blocks.append(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
        elif i % 3 == 1:
            blocks.append(nn.Sequential(nn.Tanh(), nn.Dropout(0.1)))
        else:
            blocks.append(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    return nn.Sequential(*blocks)


def test_blocks_leave_a_1000_module_model_bit_identical():
    """Every tool, clean and raising, on a 1000-module model in mixed train/eval modes (BatchNorm
    statistics move in train mode) with frozen parameters and user hooks: nothing changes."""
    import random

    torch.manual_seed(0)
    model = _deep_model(333)
    assert sum(1 for _ in model.modules()) == 1000
    rnd = random.Random(0)
    x = torch.randn(4, 4)
    user = _prepare(model, rnd)
    names = ["0.0", "166.*", "300.1", "331"]

    def forward_and_maybe_raise(raise_it: bool):
        model(x).square().sum().backward()
        if raise_it:
            raise Boom()

    blocks = [
        lambda: capture(model, names, calls="all", inputs=True, grads=True),
        lambda: capture(model, names, stop=True),
        lambda: stream(model, names, "variance", calls="last"),
        lambda: intervene(model, {"166.*": lambda t: t * 0.5}, calls=0, eval=True),
    ]
    for make in blocks:
        for raise_it in (False, True):
            before = snapshot(model)
            try:
                with make():
                    forward_and_maybe_raise(raise_it)
            except Boom:
                assert raise_it
            assert not diff(before, snapshot(model))
    before = snapshot(model)
    patching(model, x, x.flip(0), names, lambda y: y[0].sum(), batch_size=100)
    output_at(model, "200", x)
    user["armed"] = True
    with pytest.raises(Boom):
        output_at(model, "332", x)
    user["armed"] = False
    assert not diff(before, snapshot(model))


def test_a_block_walks_the_tree_once_and_writes_only_changed_flags(monkeypatch):
    """Issue 18's cost model, checked structurally (not by timing): one pass over the tree per block,
    no ``named_modules()`` walk for plain names, and on exit a flag is written only if it changed."""
    import aeprobe.state as state_mod

    torch.manual_seed(0)
    model = _deep_model(30).eval()
    walks = []
    real_walk = state_mod.walk_modules
    monkeypatch.setattr(state_mod, "walk_modules", lambda m, **kw: walks.append(1) or real_walk(m, **kw))
    named = []
    real_named = nn.Module.named_modules
    monkeypatch.setattr(nn.Module, "named_modules", lambda self, *a, **k: named.append(1) or real_named(self, *a, **k))
    writes = []
    real_setattr = nn.Module.__setattr__

    def counting_setattr(self, name, value):
        if name == "training":
            writes.append(self)
        real_setattr(self, name, value)

    monkeypatch.setattr(nn.Module, "__setattr__", counting_setattr)
    x = torch.randn(4, 4)
    with capture(model, ["3.0", "29"]) as acts, stream(model, "3.1", "mean"), intervene(model, {"5.0": lambda t: t}):
        model(x)
    assert len(walks) == 3 and not named and not writes and len(acts) == 2
    walks.clear()
    with capture(model, "3.0"):
        model[7][1].train()  # the body changes one flag: exactly that one is written back
        model(x)
    assert len(walks) == 1 and writes == [model[7][1], model[7][1]] and not model[7][1].training


def test_guard_copies_only_buffers_a_forward_can_change():
    """Normalisation statistics and buffers of train-mode modules are copied and restored; a buffer
    of an eval-mode module is not copied, so writing it in place is reported (it cannot be undone),
    and a replaced buffer object is put back."""

    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", torch.zeros(()))
            self.register_buffer("table", torch.arange(3.0))

        def forward(self, x):
            self.seen += 1  # a custom module that writes its buffer even in eval mode
            return x

    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), Counter()).eval()
    guard = ModelGuard(model)
    assert [k for _, k, _, _ in guard._buffers] == ["running_mean", "running_var", "num_batches_tracked"]
    guard.restore()
    table = model[2].table
    with pytest.warns(RuntimeWarning, match=r"Counter.seen.*could not be restored"):
        with capture(model, "0"):
            model[2].table = torch.zeros(3)  # replaced: the original object comes back
            model[1].train()  # the body switches BatchNorm to train: its statistics are still restored
            model(torch.randn(5, 3))
    assert model[2].table is table and float(model[2].seen) == 1.0
    assert float(model[1].num_batches_tracked) == 0 and not model[1].training
    model[2].train()
    before = snapshot(model)
    with capture(model, "0"):  # in training mode the Counter's buffers are copied: restored exactly
        model(torch.randn(5, 3))
    assert_unchanged(model, before)
