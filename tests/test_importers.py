"""Official checkpoints (JEM, JEM++, SADA-JEM), saved the way each codebase saves them from independent
transcriptions of its model classes (tests/official_models.py), load with weights_only=True and give the
transcription's outputs; malformed files are one-line errors."""

from __future__ import annotations

import pytest
import torch
from official_models import official_model
from torch import nn

from jembench.errors import JembenchError
from jembench.evaluation import as_checkpoint
from jembench.importers import EnergyHeadJEM
from jembench.models import load_checkpoint, load_class_gaussians

CODEBASES = ("jem", "jempp", "sada_jem")
SAVES = ("dict", "dataparallel", "bare", "legacy")


def save_official(model: nn.Module, path, how: str = "dict", buffer: torch.Tensor | None = None):
    """Write ``model`` as the official scripts do: ``{"model_state_dict", "replay_buffer"}`` (utils.checkpoint of
    each codebase), the same from an ``nn.DataParallel`` wrapper (``module.`` keys), a bare state dict (what the
    attack / eval scripts also accept), or the dict in torch's legacy non-zip serialization."""
    if how == "dataparallel":
        state = nn.DataParallel(model).state_dict()
    else:
        state = model.state_dict()
    obj = state if how == "bare" else {"model_state_dict": state, "replay_buffer": buffer}
    torch.save(obj, path, _use_new_zipfile_serialization=how != "legacy")
    return path


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_transcriptions_have_the_official_key_layout():
    """The key counts the fact sheets verified on the official classes (official-jem.md A, official-jempp.md A,
    official-sadajem.md A; WRN-10-2)."""
    counts = {(cb, norm): len(official_model(cb, norm=norm).state_dict())
              for cb in CODEBASES for norm in (None, "batch")}
    assert counts == {("jem", None): 26, ("jem", "batch"): 61, ("jempp", None): 44, ("jempp", "batch"): 114,
                      ("sada_jem", None): 24, ("sada_jem", "batch"): 59}
    yopo = official_model("jempp", norm="batch").state_dict()
    assert yopo["f.layer_one.weight"].data_ptr() == yopo["f.conv1.weight"].data_ptr()  # aliases share storage


@pytest.mark.parametrize("norm", [None, "batch"], ids=["no-norm", "batchnorm"])
@pytest.mark.parametrize("how", SAVES)
@pytest.mark.parametrize("codebase", CODEBASES)
def test_official_checkpoint_loads_with_the_transcriptions_logits(tmp_path, codebase, how, norm):
    official = official_model(codebase, norm=norm, seed=3)
    buffer = torch.rand(20, 3, 32, 32) * 2 - 1
    path = save_official(official, tmp_path / "last_ckpt.pt", how, buffer)
    loaded = load_checkpoint(path, dataset="cifar10")
    x = images()
    with torch.no_grad():
        ours, theirs = loaded.model(x), official.classify(x)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert torch.allclose(torch.logsumexp(ours, 1), official(x), atol=1e-5)  # CCF: log p(x) = LSE
    assert loaded.n_classes == 10 and loaded.image_shape == (3, 32, 32) and not loaded.model.training
    assert loaded.method == {"jem": "jem", "jempp": "jempp", "sada_jem": "unknown"}[codebase]
    assert loaded.config["format"] == {"jem": "wgrathwohl/JEM", "jempp": "sndnyang/JEMPP",
                                       "sada_jem": "sndnyang/SADAJEM or sndnyang/JEMPP"}[codebase]
    if how == "bare":
        assert loaded.buffer is None
    else:
        assert torch.equal(loaded.buffer, buffer)


@pytest.mark.parametrize("codebase", CODEBASES)
def test_imported_checkpoint_pools_non_square_inputs_as_the_official_code(tmp_path, codebase):
    """CelebA under the official Resize(32) is 3×39×32: the final map is 10×8 and the official avg_pool2d(out, 8)
    averages its top-left 8×8 — the imported model must too (an adaptive pool would average all of it)."""
    official = official_model(codebase, norm="batch", seed=5)
    loaded = load_checkpoint(save_official(official, tmp_path / "c.pt", "dict", None), dataset="cifar10")
    x = torch.rand(6, 3, 39, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    official.eval()
    with torch.no_grad():
        ours, theirs = loaded.model(x), official.classify(x)
        adaptive = loaded.model.class_output(torch.nn.functional.adaptive_avg_pool2d(
            loaded.model.f.lrelu(loaded.model.f.bn1(loaded.model.f.layer3(loaded.model.f.layer2(
                loaded.model.f.layer1(loaded.model.f.conv1(x)))))), 1).flatten(1))
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(adaptive, theirs, atol=1e-3)  # the window matters on 39×32 inputs


def test_cifar100_sized_head_and_depth_are_read_from_the_shapes(tmp_path):
    official = official_model("sada_jem", depth=16, width=1, norm="batch", n_classes=100)
    loaded = load_checkpoint(save_official(official, tmp_path / "c100.pt"), dataset="cifar100")
    assert loaded.n_classes == 100 and len(loaded.model.f.layer1) == 2
    assert loaded.model.f.layer1[0].conv1.out_channels == 16
    x = images(3)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), official.classify(x), atol=1e-5)


@pytest.mark.parametrize("codebase", CODEBASES)
def test_uncond_checkpoint_scores_log_px_with_the_energy_head(tmp_path, codebase):
    """--uncond: log p(x) is F's energy_output head in every code path that uses LSE of the logits — the OOD
    scores, their input gradient and SGLD — while p(y|x) stays class_output's softmax."""
    from jembench.metrics.ood_scores import score_tensor
    from jembench.sampling import SGLDConfig, sgld

    official = official_model(codebase, norm="batch" if codebase != "jem" else None, uncond=True, seed=5)
    path = save_official(official, tmp_path / "uncond.pt", "dict", torch.zeros(10, 3, 32, 32))
    loaded = load_checkpoint(path, dataset="cifar10", uncond=True)
    assert isinstance(loaded.model, EnergyHeadJEM) and "energy_output" in loaded.describe()["log_px"]
    assert loaded.model.energy_output is loaded.model.net.energy_output and loaded.model.f is loaded.model.net.f
    x = images()
    with torch.no_grad():
        logits = loaded.model(x)
        assert torch.allclose(torch.logsumexp(logits, 1), official(x), atol=1e-5)
        assert torch.allclose(logits.softmax(1), official.classify(x).softmax(1), atol=1e-6)
        assert torch.equal(logits.argmax(1), official.classify(x).argmax(1))
    plain = load_checkpoint(path, dataset="cifar10")  # the same file read as a CCF: LSE of the logits
    with torch.no_grad():
        assert not torch.allclose(torch.logsumexp(plain.model(x), 1), official(x), atol=1e-3)

    scores = score_tensor(loaded.model, x, ["log_px", "grad_norm", "max_py"], batch_size=4)
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(official(xg).sum(), xg)[0]
    assert torch.allclose(scores["log_px"], official(x).detach(), atol=1e-5)
    assert torch.allclose(scores["grad_norm"], -grad.flatten(1).norm(dim=1), rtol=1e-4, atol=1e-6)
    assert torch.allclose(scores["max_py"], official.classify(x).softmax(1).max(1).values.detach(), atol=1e-6)

    # one SGLD step on log p(x) is ascent on the energy head (official sample_q: x += lr * d f(x)/dx)
    stepped = sgld(loaded.model, x, SGLDConfig(n_steps=1, step_size=0.5, noise=0.0))
    assert torch.allclose(stepped, x + 0.5 * grad, atol=1e-5)


def test_method_is_required_when_the_layout_does_not_say(tmp_path, capsys):
    from jembench.cli import main

    path = save_official(official_model("sada_jem", norm="batch"), tmp_path / "last_ckpt.pt")
    with pytest.raises(JembenchError, match="pass --method sada_jem or --method jempp"):
        as_checkpoint(path, dataset="cifar10")
    ckpt = as_checkpoint(path, dataset="cifar10", method="sada_jem")
    assert ckpt.method == "sada_jem" and ckpt.name == "sada_jem-official-last_ckpt"
    assert ckpt.describe()["format"] == "sndnyang/SADAJEM or sndnyang/JEMPP"
    assert as_checkpoint(path, dataset="cifar10", method="jempp", name="mine").name == "mine"
    with pytest.raises(JembenchError, match="must be a lower-case name"):
        as_checkpoint(path, dataset="cifar10", method="SADA <b>")
    # the CLI: one line, exit 2, before any data is read
    assert main(["eval", str(path), "--dataset", "cifar10", "--no-download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method" in err[0] and "jem, jempp, sada_jem, softmax" in err[0]
    # the JEM code's layout (f.linear) and JEM++'s (YOPO aliases) do say
    jem = save_official(official_model("jem"), tmp_path / "jem.pt")
    assert as_checkpoint(jem, dataset="cifar10").method == "jem"
    assert as_checkpoint(jem, dataset="cifar10", method="softmax").name == "softmax-official-jem"


def test_uncond_is_refused_for_our_checkpoints_and_modules(tmp_path):
    from jembench.reference_models.wideresnet import wide_resnet

    from jembench.models import save_checkpoint

    kwargs = dict(depth=10, widen_factor=1, n_classes=10, in_channels=1)
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, arch="wrn", arch_kwargs=kwargs, model=wide_resnet(**kwargs), method="jem",
                    dataset="digits", n_classes=10, image_shape=(1, 8, 8), config={})
    with pytest.raises(JembenchError, match="drop --uncond"):
        load_checkpoint(ours, uncond=True)
    with pytest.raises(JembenchError, match="--uncond applies to official checkpoint files"):
        as_checkpoint(wide_resnet(**kwargs), dataset="digits", uncond=True)


@pytest.mark.parametrize("codebase,edit,message", [
    ("jem", lambda s: s.pop("class_output.bias"), "lacks 'class_output.bias'"),
    ("sada_jem", lambda s: s.pop("f.layer2.0.conv1.bias"), "does not match its architecture"),
    ("jempp", lambda s: s.pop("f.layer2.0.conv1.bias"), "has no canonical key 'f.layer2.0.conv1.bias'"),
    ("jem", lambda s: s.__setitem__("class_output.weight", torch.zeros(10, 7)), "does not match its architecture"),
    ("sada_jem", lambda s: s.__setitem__("f.layer1.0.conv1.weight", torch.zeros(24, 16, 3, 3)),
     "not a multiple of 16"),
    ("jempp", lambda s: s.__setitem__("f.other_layers.0.0.conv1.weight",
                                      s["f.other_layers.0.0.conv1.weight"].clone().add_(1e-3)),
     "does not hold the same values"),
    ("jempp", lambda s: s.__setitem__("f.other_layers.3.weight", s["f.bn1.weight"][:-1].clone()),
     "does not hold the same values"),
    ("sada_jem", lambda s: s.pop("f.conv1.weight"), "lacks 'f.conv1.weight'"),
    ("jempp", lambda s: s.__setitem__("f.layer_one.extra", torch.zeros(1)), "has no canonical key 'f.conv1.extra'"),
    ("sada_jem", lambda s: s.__setitem__("f.layer4.0.conv1.weight", torch.zeros(1)), "64-pixel"),
    ("sada_jem", lambda s: s.__setitem__("class_output.note", "hello"), "is a str, not a tensor"),
])
def test_malformed_official_files_are_one_line_errors(tmp_path, codebase, edit, message):
    state = dict(official_model(codebase, norm="batch").state_dict())
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"model_state_dict": state, "replay_buffer": torch.zeros(4, 3, 32, 32)}, path)
    with pytest.raises(JembenchError, match=message) as err:
        load_checkpoint(path, dataset="cifar10")
    assert "\n" not in str(err.value) and "bad.pt" in str(err.value)


def test_malformed_containers_are_one_line_errors(tmp_path):
    state = official_model("sada_jem", norm="batch").state_dict()
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    for obj, message in [({"model_state_dict": mixed}, "some keys carry nn.DataParallel's 'module.' prefix"),
                         ({"model_state_dict": [1, 2]}, "model_state_dict is a list"),
                         ({"model_state_dict": state, "replay_buffer": [0]}, "replay_buffer must be a float tensor"),
                         ({"model_state_dict": state, "replay_buffer": torch.zeros(4, 1, 32, 32)}, "1 channels")]:
        path = tmp_path / "x.pt"
        torch.save(obj, path)
        with pytest.raises(JembenchError, match=message) as err:
            load_checkpoint(path, dataset="cifar10")
        assert "\n" not in str(err.value)


def test_authors_class_statistics_become_the_informative_init(tmp_path):
    """<dataset>_mean.pt [C, D] and <dataset>_cov.pt [C, D, D] (bare tensors) → N(mean, cov + 1e-4 I)."""
    torch.manual_seed(0)
    c, shape = 3, (1, 2, 2)
    d = 4
    means = torch.randn(c, d) * 0.1
    a = torch.randn(c, d, d) * 0.2
    covs = a @ a.transpose(1, 2)
    torch.save(means, tmp_path / "mean.pt")
    torch.save(covs, tmp_path / "cov.pt")
    init = load_class_gaussians(tmp_path / "mean.pt", tmp_path / "cov.pt", shape, c)
    assert torch.equal(init.means, means)
    rebuilt = init.scale_trils.double() @ init.scale_trils.double().transpose(1, 2)
    assert torch.allclose(rebuilt, covs.double() + 1e-4 * torch.eye(d, dtype=torch.float64), atol=1e-5)
    assert init.sample(torch.tensor([0, 2]), "cpu").shape == (2, *shape)
    torch.save(covs[:, :3, :3], tmp_path / "bad.pt")
    with pytest.raises(JembenchError, match=r"must hold a float tensor of shape \(3, 4, 4\)"):
        load_class_gaussians(tmp_path / "mean.pt", tmp_path / "bad.pt", shape, c)
    torch.save(-covs - torch.eye(d), tmp_path / "neg.pt")
    with pytest.raises(JembenchError, match="not positive definite"):
        load_class_gaussians(tmp_path / "mean.pt", tmp_path / "neg.pt", shape, c)
