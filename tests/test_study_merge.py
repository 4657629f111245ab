"""Axis values that resolve to the same model and budget are trained once, not twice."""

from scalinglab.sweep import study_from_dict


def test_shapes_that_collapse_are_trained_once(byte_dataset, tmp_path):
    raw = {
        "study": {"name": "merge", "data": str(byte_dataset)},
        "base": {"n_ctx": 32, "tokens": 20_000},
        # at N ~ 2e5, aspect ratios 128 and 256 both round to a single layer of the same width
        "axes": {"n_params": [2e5], "aspect_ratio": [8, 128, 256], "depth": {"d_head": 16}},
    }
    study = study_from_dict(raw, base_dir=tmp_path)
    shapes = [(c.n_layer, c.d_model) for c in study.runs]
    assert len(shapes) == len(set(shapes)) == 2
    assert len(study.merged) == 1
    kept, dropped = study.merged[0]
    assert "aspect_ratio=128" in kept and "aspect_ratio=256" in dropped
