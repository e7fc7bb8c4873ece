"""The X-ray head's pure pieces: crop labelling, class balancing, LDA projection."""

from __future__ import annotations

import numpy as np

from training.xray.head import BACKGROUND, balance, fit_lda, label_crops


def test_label_crops_prefers_best_overlap_and_ignores_containers():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 20, 20], [200, 200, 5, 5]], float)
    threat = [((1, 1, 10, 10), "slide")]
    clutter = [((48, 52, 20, 20), "pen"), ((0, 0, 300, 300), "suitcase")]
    assert label_crops(boxes, threat, clutter) == ["slide", "pen", BACKGROUND]
    assert label_crops(boxes, [], []) == [BACKGROUND] * 3


def test_balance_caps_each_class():
    labels = ["a"] * 10 + ["b"] * 3
    keep = balance(labels, 4, np.random.default_rng(0))
    kept = [labels[i] for i in keep]
    assert kept.count("a") == 4 and kept.count("b") == 3
    keep = balance(labels, 2, np.random.default_rng(0), {"a": 7})
    kept = [labels[i] for i in keep]
    assert kept.count("a") == 7 and kept.count("b") == 2


def test_fit_lda_separates_classes_hidden_by_a_nuisance():
    rng = np.random.default_rng(0)
    d, n = 40, 60
    nuisance = rng.normal(0, 5.0, (3 * n, 1)) * rng.normal(size=(1, d))  # big shared variation
    centres = rng.normal(0, 0.6, (3, d))
    y = np.repeat(["a", "b", "c"], n).tolist()
    x = 10.0 + nuisance + centres[np.repeat(np.arange(3), n)] + rng.normal(0, 0.3, (3 * n, d))
    x = np.abs(x)

    def nearest_mean_accuracy(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        means = np.stack([z[np.array(y) == c].mean(0) for c in "abc"])
        pred = np.array(list("abc"))[np.argmax(z @ means.T, axis=1)]
        return float(np.mean(pred == np.array(y)))

    w = fit_lda(x, y, dims=8, pca_dims=30, shrinkage=0.1)
    assert w.shape == (2, d)  # at most classes - 1 directions
    mu = x.mean(0)
    assert np.allclose(w @ (mu / np.linalg.norm(mu)), 0.0, atol=1e-5)
    assert nearest_mean_accuracy(x @ w.T) > 0.95
    assert nearest_mean_accuracy(x) < nearest_mean_accuracy(x @ w.T)
