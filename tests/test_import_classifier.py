"""A teacher from torchvision weights (the paper's ImageNet ResNet-18): `d3hr import-classifier` maps the state dict
onto timm's architecture and records ImageNet's mean/std, so d3hr's [-1, 1] images give the network the inputs it
was trained on."""

from __future__ import annotations

import pytest
import torch

from d3hr import D3HRError
from d3hr.cli import main
from d3hr.nets import load_classifier


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that a wrong normalisation shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_imported_torchvision_resnet18_matches_torchvision_on_normalised_inputs(torchvision_resnet18, tmp_path):
    net, weights = torchvision_resnet18
    out = tmp_path / "teacher.pt"
    train = tmp_path / "train"
    for k in range(10):
        (train / f"n{9 - k:08d}").mkdir(parents=True)
    assert main(["import-classifier", "--weights", str(weights), "--arch", "resnet18", "--num-classes", "10",
                 "--resolution", "64", "--classes-from", str(train), "--out", str(out)]) == 0
    model, ck = load_classifier(out, num_classes=10)
    assert ck["input_mean"] == [0.485, 0.456, 0.406] and ck["small_input"] is False
    assert ck["classes"] == [f"n{k:08d}" for k in range(10)]  # sorted folder names: ImageNet's label order
    x = torch.rand(4, 3, 64, 64) * 2 - 1  # what d3hr feeds classifiers
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net(((x + 1) / 2 - mean) / std)
        got = model(x)
        raw = model[1](x)  # the same weights without the normalisation differ
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()
    assert not torch.allclose(raw, ref, atol=1e-2)

    # --input-norm none: the network gets [-1, 1] as it is
    out2 = tmp_path / "plain.pt"
    assert main(["import-classifier", "--weights", str(weights), "--num-classes", "10", "--input-norm", "none",
                 "--out", str(out2)]) == 0
    plain, ck2 = load_classifier(out2)
    assert "input_mean" not in ck2
    with torch.no_grad():
        assert torch.allclose(plain(x), raw, atol=1e-5)


def test_import_rejects_weights_that_do_not_fit(torchvision_resnet18, tmp_path, capsys):
    _, weights = torchvision_resnet18
    # 10-class weights into a 1,000-class ResNet-18, and into another architecture: a clear error, no output
    assert main(["import-classifier", "--weights", str(weights), "--out", str(tmp_path / "a.pt")]) == 2
    assert "fc.weight has shape (10, 512), resnet18 expects (1000, 512)" in capsys.readouterr().err
    assert main(["import-classifier", "--weights", str(weights), "--arch", "resnet50", "--num-classes", "10",
                 "--out", str(tmp_path / "b.pt")]) == 2
    assert "does not fit timm's resnet50" in capsys.readouterr().err
    (tmp_path / "train" / "only_one").mkdir(parents=True)
    assert main(["import-classifier", "--weights", str(weights), "--num-classes", "10", "--classes-from",
                 str(tmp_path / "train"), "--out", str(tmp_path / "e.pt")]) == 2
    assert "1 class folders, but --num-classes is 10" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    assert main(["import-classifier", "--weights", str(bad), "--out", str(tmp_path / "c.pt")]) == 2
    assert f"{bad}: cannot read a state dict" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.pt"))
    with pytest.raises(D3HRError, match="weights file not found"):
        from d3hr.nets import import_classifier

        import_classifier(tmp_path / "missing.pth", tmp_path / "d.pt", "resnet18", 10, 64)
