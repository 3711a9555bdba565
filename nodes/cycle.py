"""CycleDiffusion (DPM-Encoder + decode with a target prompt) and Cycle-SDE editing (spec csd §2, §3)."""
from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .host.model import INVERSION_KEY, calculate_sigmas, intermediate_device, latent_output, sigma_floor
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .common import (CATEGORY, MAX_STEPS, InputError, check_conditioning, check_latent, check_model, check_schedule,
                     first_error, latent_mask, model_latent, require_schedule, scheduler_input,
                     user_errors)
from .common import DreamNode, schema, seed_input
from ..dreamsampler_core import cycle, pipelines

log = logging.getLogger("DreamSampler")

#: LATENT key holding the CycleCode written by DDPM Encode
CYCLE_KEY = "dream_cycle"
SUB = f"{CATEGORY}/cycle"
SEED_TOOLTIP = "Seed of the forward noising (which stochastic latent represents the image)."


def cycle_grid(model, scheduler: str, steps: int, strength: float, name: str = "strength") -> torch.Tensor:
    """The sampling grid (as KSampler's steps/denoise) with its final 0 moved to the model's
    smallest sigma, so that every step adds noise and the clean latent is exactly encodable.
    ``name``: the node's input holding ``strength`` (for messages)."""
    require_schedule(steps, strength, "steps", name)
    sigmas = calculate_sigmas(model, scheduler, steps, strength)
    if len(sigmas) < 2:
        raise InputError(f"steps={steps} with {name}={strength} leaves no step; raise steps or {name}.")
    sigmas = cycle.clean_end_grid(sigmas, sigma_floor(model))
    err = cycle.end_level_error(sigmas)
    if err:
        raise InputError(f"scheduler '{scheduler}' with steps={steps}, {name}={strength}: {err}. "
                         "Try the 'ddim_uniform' or 'simple' scheduler.")
    return sigmas


def _to_store(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(intermediate_device(), copy=True)


def code_of(latent) -> cycle.CycleCode:
    code = latent.get(CYCLE_KEY) if isinstance(latent, dict) else None
    if not isinstance(code, cycle.CycleCode):
        raise InputError("this LATENT carries no DDPM code; connect the output of 'Dream DDPM Encode'.")
    return code


def _check_code(model, code: cycle.CycleCode, samples=None):
    param = check_model(model)
    if code.meta.get("param") and code.meta["param"] != param.kind:
        raise InputError(f"the code was encoded with a '{code.meta['param']}' model but this model is "
                         f"'{param.kind}'; decode with the model family used for encoding.")
    if samples is not None and tuple(samples.shape) != tuple(code.x_start.shape):
        raise InputError(f"the latent's shape {tuple(samples.shape)} differs from the code's "
                         f"{tuple(code.x_start.shape)}; connect DDPM Encode's output unchanged.")
    return param


def describe(code: cycle.CycleCode) -> str:
    return (f"DDPM code: {code.steps} steps, eta={code.eta:g}, {code.coupling} coupling; start latent + "
            f"{code.steps} noises + {code.steps} more trajectory latents = {code.nbytes / 2 ** 20:.2f} MiB in RAM "
            f"(about 2 x steps x latent size), kept with the cached output.")


def _validate(steps=None, strength=None, eta=None):
    """Dream DDPM Encode's checks beyond each input's declared range (DreamNode.validate_inputs checks those first)."""
    return first_error(
        "strength must be greater than 0" if strength is not None and strength <= 0 else None,
        "eta must be greater than 0: a deterministic sampler has no noise to encode (use DDIM inversion)"
        if eta is not None and eta <= 0 else None,
        check_schedule(steps, strength, "steps", "strength"),
    )


class DreamDDPMEncode(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDDPMEncode",
            search_aliases=["cyclediffusion", "dpm encoder", "ddpm inversion", "edit friendly inversion"],
            display_name="Dream DDPM Encode (DPM-Encoder)",
            category=SUB,
            description="CycleDiffusion's DPM-Encoder: noises the image latent to the start level and records, "
                        "for every later step, the noise that makes the stochastic DDIM(eta) sampler with the "
                        "SOURCE prompt land exactly on the source trajectory. Decoding this code with the same "
                        "prompt gives back the image; with a target prompt it edits it (Dream CycleDiffusion "
                        "Decode). Memory: (2 x steps + 1) latents (SD1.5 at 512 px, 40 steps: 5 MiB per image).",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
                io.Conditioning.Input("source", tooltip="Prompt describing the INPUT image (e.g. 'a photo of a cat')."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt, used when source_cfg != 1."),
                io.Latent.Input("latent_image", tooltip="VAE-encoded image to encode."),
                seed_input(SEED_TOOLTIP),
                io.Int.Input("steps", default=40, min=1, max=MAX_STEPS,
                             tooltip="Steps actually run (as KSampler with denoise). 40 at strength 0.8 is "
                                     "the 50-step grid of diffusers' CycleDiffusion."),
                scheduler_input(),
                io.Float.Input("strength", default=0.8, min=0.0, max=1.0, step=0.01,
                               tooltip="How far up the noise schedule to start (t0, like denoise). Higher edits "
                                       "more, lower keeps more of the image. The paper used 0.5-0.85."),
                io.Float.Input("eta", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="DDIM eta of the sampler the code is for (0.1 in the paper; 1 = DDPM). "
                                       "Must be > 0. The decoder uses the same value."),
                io.Float.Input("source_cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the source prompt while encoding (the paper uses 1)."),
                io.Combo.Input("coupling", options=list(cycle.COUPLINGS), default="posterior",
                               tooltip="'posterior': CycleDiffusion (any eta). 'markov': SDE-Drag's forward "
                                       "noising (only eta = 1)."),
            ],
            outputs=[io.Latent.Output(display_name="encoded",
                                      tooltip="Noisy start latent plus the recorded noises (the DDPM code)."),
                     io.String.Output(display_name="info", tooltip="Steps, eta and memory size of the code.")],
        )

    @classmethod
    def check_inputs(cls, steps=1, strength=0.8, eta=0.1, coupling="posterior"):
        err = _validate(steps=steps, strength=strength, eta=eta)
        # repeats the combo's options but, unlike the schema check, also refuses a linked coupling (None here);
        # kept so that validation behaves as before
        if err is True and coupling not in cycle.COUPLINGS:
            return f"coupling must be one of {cycle.COUPLINGS}, got {coupling!r}"
        if err is True and coupling == "markov" and eta != 1.0:
            return "the 'markov' coupling needs eta = 1 (use 'posterior' for other eta)"
        return err

    @classmethod
    def execute(cls, model, source, negative, latent_image, seed, steps, scheduler, strength, eta, source_cfg,
                coupling) -> io.NodeOutput:
        param = check_model(model)
        check_conditioning(source, "source")
        check_conditioning(negative, "negative")
        samples = model_latent(model, latent_image)
        sigmas = cycle_grid(model, scheduler, steps, strength)
        generator = torch.Generator().manual_seed(int(seed))
        encoder = CoreSampler(pipelines.cyclediffusion_encode, eta=eta, coupling=coupling, generator=generator,
                              store=_to_store)
        with user_errors():
            x_start, report = run_pipeline(new_guider(model, source, negative, source_cfg), encoder, sigmas,
                                           samples, seed=seed)
        code = report.code
        code.sigmas = sigmas.detach().cpu()
        code.meta.update(param=param.kind, steps=int(steps), strength=float(strength), scheduler=scheduler,
                         source_cfg=float(source_cfg))
        info = describe(code)
        log.info(info)
        out = latent_output(latent_image, x_start, drop=("noise_mask", INVERSION_KEY))
        out[CYCLE_KEY] = code
        return io.NodeOutput(out, info)


class DreamDDPMDecode(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDDPMDecode",
            search_aliases=["cyclediffusion", "dpm decoder"],
            display_name="Dream CycleDiffusion Decode",
            category=SUB,
            description="Decodes a DDPM code (from Dream DDPM Encode) with the TARGET prompt: the stochastic "
                        "DDIM(eta) sampler reuses the recorded noises, so everything the prompts share stays "
                        "and the difference is edited (CycleDiffusion, zero-shot). With the source prompt and "
                        "source_cfg it reconstructs the image. An optional mask keeps the black region on the "
                        "source trajectory.",
            inputs=[
                io.Model.Input("model", tooltip="The same diffusion model as for encoding."),
                io.Conditioning.Input("target", tooltip="Prompt describing the EDITED image (e.g. 'a photo of a dog')."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt, used when cfg != 1."),
                io.Latent.Input("encoded", tooltip="Output of Dream DDPM Encode."),
                io.Float.Input("cfg", default=3.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the target prompt (paper: 1-5; diffusers examples: 2-3)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white = may change, black = stays on the source trajectory "
                                      "(exactly the source at the end). Resized to the latent grid."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Edited latent.")],
        )

    @classmethod
    def execute(cls, model, target, negative, encoded, cfg, mask=None) -> io.NodeOutput:
        check_conditioning(target, "target")
        check_conditioning(negative, "negative")
        code = code_of(encoded)
        samples = check_latent(encoded, "encoded")
        _check_code(model, code, samples)
        with user_errors():
            decoder = CoreSampler(pipelines.cyclediffusion_decode, code.steps, code=code,
                                  mask=latent_mask(mask, samples))
            out, _ = run_pipeline(new_guider(model, target, negative, cfg), decoder, code.sigmas, samples)
        result = {k: v for k, v in encoded.items() if k != CYCLE_KEY}
        result["samples"] = out
        return io.NodeOutput(result)


class DreamCycleDiffusionSampler(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamCycleDiffusionSampler",
            search_aliases=["cyclediffusion", "dpm decoder sampler"],
            display_name="Dream CycleDiffusion (SAMPLER)",
            category=f"{CATEGORY}/custom_sampling",
            description="CycleDiffusion decoding as a SAMPLER for SamplerCustomAdvanced: connect Dream DDPM Encode's "
                        "output here AND as latent_image, a guider with the target prompt, and SIGMAS from a "
                        "BasicScheduler with the encoder's scheduler, steps and denoise = strength. The noise "
                        "input is not used. A noise_mask on the latent keeps the black region on the source.",
            inputs=[io.Latent.Input("encoded", tooltip="Output of Dream DDPM Encode (the code is read from it).")],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, encoded) -> io.NodeOutput:
        code = code_of(encoded)

        return io.NodeOutput(CoreSampler(pipelines.cyclediffusion_decode, code.steps, code=code))


class DreamCycleSDEEdit(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamCycleSDEEdit",
            search_aliases=["cycle sde", "sdedit", "sde edit"],
            display_name="Dream Cycle-SDE Edit",
            category=SUB,
            description="SDEdit-style text editing with a choice of stage 2 (SDE-Drag paper, 'SDE beats ODE'): the "
                        "image is noised to t0 by forward noising, then sampled down with the target prompt by "
                        "the ODE (DDIM), the SDE (DDPM, fresh noise) or Cycle-SDE (DDPM reusing the noise recovered "
                        "from the forward path with the source prompt: keeps more of the image). The same seed "
                        "gives all three the same start. An optional mask resets the black region to the forward "
                        "path after every step.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified)."),
                io.Conditioning.Input("source", tooltip="Prompt describing the INPUT image (Cycle-SDE's noise recovery)."),
                io.Conditioning.Input("target", tooltip="Prompt describing the EDITED image."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt for both guidances."),
                io.Latent.Input("latent_image", tooltip="VAE-encoded image to edit."),
                seed_input(SEED_TOOLTIP),
                io.Int.Input("steps", default=35, min=1, max=MAX_STEPS,
                             tooltip="Steps actually run (35 at t0 = 0.7 is the paper's 50-step grid). Cycle-SDE "
                                     "costs twice as many model calls (noise recovery)."),
                scheduler_input(),
                io.Float.Input("t0", default=0.7, min=0.0, max=1.0, step=0.01,
                               tooltip="Start level (like denoise). Higher edits more; the paper sweeps 0.3-0.8."),
                io.Combo.Input("stage2", options=list(cycle.STAGE2), default="cycle_sde",
                               tooltip="cycle_sde: DDPM with recovered noise; sde: DDPM with fresh noise; ode: DDIM."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the target prompt."),
                io.Float.Input("source_cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance of the source prompt in Cycle-SDE's noise recovery (DiffEdit-SDE: 7.5)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white = may change, black = kept (exactly, at the end)."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Edited latent.")],
        )

    @classmethod
    def check_inputs(cls, steps=1, t0=0.7):
        return first_error("t0 must be greater than 0" if t0 is not None and t0 <= 0 else None,
                           check_schedule(steps, t0, "steps", "t0"))

    @classmethod
    def execute(cls, model, source, target, negative, latent_image, seed, steps, scheduler, t0, stage2, cfg,
                source_cfg, mask=None) -> io.NodeOutput:
        check_model(model)
        for c, n in ((source, "source"), (target, "target"), (negative, "negative")):
            check_conditioning(c, n)
        if stage2 not in cycle.STAGE2:
            raise InputError(f"stage2 must be one of {cycle.STAGE2}, got {stage2!r}")
        samples = model_latent(model, latent_image)
        m = latent_mask(mask, samples)
        sigmas = cycle_grid(model, scheduler, steps, t0, "t0")
        K = len(sigmas) - 1
        guider = new_guider(model, target, negative, cfg)
        guider.add_branch("source", source, source_cfg)
        editor = CoreSampler(pipelines.cycle_sde_edit, 2 * K if stage2 == "cycle_sde" else K, stage2=stage2,
                             seed=seed, mask=m, store=_to_store)
        with user_errors():
            out, _ = run_pipeline(guider, editor, sigmas, samples, seed=seed)
        result = latent_output(latent_image, out, drop=("noise_mask", CYCLE_KEY, INVERSION_KEY))
        return io.NodeOutput(result)


NODES = [DreamDDPMEncode, DreamDDPMDecode, DreamCycleDiffusionSampler, DreamCycleSDEEdit]
