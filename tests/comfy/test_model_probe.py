"""The latent convention is read from the model_sampling object's behaviour (issue 14): every
prediction type ComfyUI has, and those newer versions add, is accepted with the right convention
or refused with a message naming the type."""
import pytest
import torch

#: behaviour name -> what the probe must say (support.sampling_behaviours.BEHAVIOURS; comfy is only
#: importable once the pack fixture set the host up, so the table is checked against it in the test)
EXPECTED = {"eps": "ve", "v_prediction": "ve", "edm": "ve", "x0": "ve", "flow_sd3": "flow", "flow_flux": "flow",
            "cosmos_rflow": "ve", "img_to_img": "refuse", "img_to_img_flow": "refuse",
            "img_to_img_velocity": "refuse", "v_prediction_ddpm": "ve", "const_noise_scale": "flow",
            "flow_av": "flow"}


@pytest.fixture(scope="module")
def H(pack):
    from dreamsampler_pack.nodes import host
    return host


@pytest.fixture(scope="module")
def B(pack):
    from support import sampling_behaviours
    assert {k: v[2] for k, v in sampling_behaviours.BEHAVIOURS.items()} == EXPECTED
    return sampling_behaviours


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_reads_each_prediction_type_from_its_behaviour(H, B, name):
    expected = B.BEHAVIOURS[name][2]
    ms = B.make(name)
    if expected == "refuse":
        with pytest.raises(H.UnsupportedModelError) as e:
            H.model.probe_convention(ms)
        msg = str(e.value)
        assert B.BEHAVIOURS[name][1].__name__ in msg                 # names the model type
        assert "Supported:" in msg
        return
    param = H.model.probe_convention(ms)
    assert param.kind == expected
    assert param.noise_scale == (2.0 if name == "const_noise_scale" else 1.0)
    # the derived coefficients reproduce the model's own noise scaling at a mid level
    sigma = torch.tensor([float(ms.percent_to_sigma(0.4))])
    x0, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    got = ms.noise_scaling(sigma, eps.clone(), x0.clone(), max_denoise=False)
    s = float(sigma)
    assert torch.allclose(got, param.signal(s) * x0 + param.noise(s) * eps, atol=1e-5)


def test_probe_refuses_image_to_image_flow_saying_why(H, B):
    with pytest.raises(H.UnsupportedModelError, match="adds no noise"):
        H.model.probe_convention(B.make("img_to_img_flow"))
    with pytest.raises(H.UnsupportedModelError, match="adds no noise"):
        H.model.probe_convention(B.make("img_to_img_velocity"))
    with pytest.raises(H.UnsupportedModelError, match="image-to-image predictor"):
        H.model.probe_convention(B.make("img_to_img"))


def test_probe_follows_a_model_patch(H, B):
    """ModelSamplingDiscrete-style object patches change what the probe sees (not the class of the
    base model)."""
    from tools.tiny_models import tiny_model
    base = tiny_model("eps")
    assert H.parameterization(base).kind == "ve"
    patched = base.clone()
    patched.add_object_patch("model_sampling", B.make("const_noise_scale"))
    p = H.parameterization(patched)
    assert (p.kind, p.noise_scale) == ("flow", 2.0)
    assert H.parameterization(base).kind == "ve"                  # the shared model is untouched


def test_each_run_probes_its_own_model_sampling_and_logs_a_change(H, caplog):
    """The convention comes from the model_sampling object the network samples with in this run
    (core ModelSamplingSD3 on a clone of an eps model: flow), never from an earlier run on the same
    network; a change between runs is logged, naming ComfyUI issue #16490 (a schedule left behind by
    an earlier run) as the cause when no ModelSampling node changed."""
    import logging
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    from tools.tiny_models import fake_conditioning, tiny_model
    plain = tiny_model("eps", seed=1)
    (flow,) = ModelSamplingSD3().patch(plain, 3.0)
    null = fake_conditioning(0)
    seen = []

    def run_once(model):
        sampler = H.CoreSampler(lambda run: (seen.append(run.param.kind), (run.latent, None))[1])
        sigmas = H.calculate_sigmas(model, "normal", 2)
        with torch.inference_mode():
            H.run_pipeline(H.new_guider(model, null, null, 1.0), sampler, sigmas, torch.zeros(1, 4, 8, 8),
                           progress=False)

    with caplog.at_level(logging.WARNING, logger="DreamSampler"):
        run_once(plain)
        run_once(plain)
        assert seen == ["ve", "ve"] and "changed" not in caplog.text
        run_once(flow)
        assert seen[-1] == "flow" and "#16490" in caplog.text and "-> ModelSampling" in caplog.text
        caplog.clear()
        run_once(plain)
        assert seen[-1] == "ve" and "flow -> " in caplog.text
