"""The paper's cross-architecture students, by their timm names, train on the CPU: two steps of the evaluation loop
(teacher soft labels on CutMix batches) at ImageNet's 224 px on a tiny set, weights updated, losses finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from d3hr.evaluate import train_student
from d3hr.nets import create_classifier

PAPER_STUDENTS = ["resnet18", "resnet50", "resnet101", "mobilenetv2_100", "efficientnet_b0",
                  "swin_tiny_patch4_window7_224"]


@pytest.fixture(scope="module")
def tiny_imagenet_batch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    y = np.array([0, 1])
    teacher = create_classifier("convnet_tiny", 3, 3, small_input=False, resolution=224, seed=0)
    return x, y, teacher


@pytest.mark.parametrize("arch", PAPER_STUDENTS)
def test_paper_students_train_two_steps_at_224px(arch, tiny_imagenet_batch):
    x, y, teacher = tiny_imagenet_batch
    torch.set_num_threads(1)
    student = create_classifier(arch, 3, 3, small_input=False, resolution=224, seed=0)
    before = [p.detach().clone() for p in student.parameters()]
    res = train_student(student, teacher, x, y, (x, y), steps=2, batch_size=2, lr=1e-3, weight_decay=0.01, seed=0,
                        n_evals=1)
    assert np.isfinite([res["loss_first"], res["loss_last"]]).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert 0.0 <= res["top1"] <= 1.0
