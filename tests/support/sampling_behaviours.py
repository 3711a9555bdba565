"""model_sampling objects that behave like each prediction type ComfyUI has (pinned 0.3.75) or adds
later (0.38.1's comfy/model_sampling.py: image-to-image flow / velocity models, CogVideoX-style
v-prediction on raw DDPM inputs, CONST with a noise scale), to test the pack's behaviour-based
latent-convention probe.  The newer ones are written here from their equations (0.3.75 lacks them):

* image-to-image flow:      x0 = output;          noise scaling returns the input latent; output 1 - x
* image-to-image velocity:  x0 = input - output;  noise scaling returns the input latent
* v-prediction DDPM:        raw input x = x0 + sigma eps; x0 = (x - sigma v) / sqrt(1 + sigma^2)
* CONST with noise scale k: x = (1 - sigma) x0 + k sigma eps
* LTX-2's ModelSamplingAV (FLOW_AV): a flow schedule with an audio shift (the video stream's math)
"""
from __future__ import annotations

import torch

import comfy.model_sampling as MS


def _col(sigma, ref):
    return sigma.reshape(sigma.shape[:1] + (1,) * (ref.ndim - 1))


class ImgToImgFlow(MS.CONST):
    def calculate_denoised(self, sigma, model_output, model_input):
        return model_output

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return 1.0 - latent


class ImgToImgVelocity(MS.CONST):
    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image


class VPredictionDDPM:
    def calculate_input(self, sigma, noise):
        return noise

    def calculate_denoised(self, sigma, model_output, model_input):
        s = _col(sigma, model_output)
        return (model_input - model_output * s) / (s * s + 1.0) ** 0.5

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        s = _col(sigma, noise)
        return noise * (torch.sqrt(1.0 + s * s) if max_denoise else s) + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class ConstNoiseScale(MS.CONST):
    noise_scale = 2.0

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        s = _col(sigma, noise)
        return s * (self.noise_scale * noise) + (1.0 - s) * latent_image


class ModelSamplingAV(MS.ModelSamplingDiscreteFlow):
    """LTX-2's audio-video schedule (0.38.1's ``ModelSamplingAV``): the video stream's flow schedule;
    the packed audio stream rides on it scaled by ``audio_scale`` = shift / audio_shift."""

    def __init__(self, model_config=None):
        super().__init__(model_config)
        self.audio_shift = 2.0

    @property
    def audio_scale(self):
        return self.shift / self.audio_shift


#: name -> (schedule class, prediction class, what the probe must say: "ve" / "flow" / "refuse")
BEHAVIOURS = {
    "eps": (MS.ModelSamplingDiscrete, MS.EPS, "ve"),
    "v_prediction": (MS.ModelSamplingDiscrete, MS.V_PREDICTION, "ve"),
    "edm": (MS.ModelSamplingContinuousEDM, MS.EDM, "ve"),
    "x0": (MS.ModelSamplingDiscrete, MS.X0, "ve"),
    "flow_sd3": (MS.ModelSamplingDiscreteFlow, MS.CONST, "flow"),
    "flow_flux": (MS.ModelSamplingFlux, MS.CONST, "flow"),
    "cosmos_rflow": (MS.ModelSamplingCosmosRFlow, MS.COSMOS_RFLOW, "ve"),
    "img_to_img": (MS.ModelSamplingDiscrete, MS.IMG_TO_IMG, "refuse"),
    "img_to_img_flow": (MS.ModelSamplingDiscreteFlow, ImgToImgFlow, "refuse"),
    "img_to_img_velocity": (MS.ModelSamplingDiscreteFlow, ImgToImgVelocity, "refuse"),
    "v_prediction_ddpm": (MS.ModelSamplingDiscrete, VPredictionDDPM, "ve"),
    "const_noise_scale": (MS.ModelSamplingDiscreteFlow, ConstNoiseScale, "flow"),
    "flow_av": (ModelSamplingAV, MS.CONST, "flow"),
}


def make(name: str, model_config=None):
    """A model_sampling object of behaviour ``name`` (as ComfyUI composes schedule + prediction type)."""
    schedule, prediction, _ = BEHAVIOURS[name]
    cls = type("ModelSampling", (schedule, prediction), {})
    return cls(model_config)
