"""The GPU code paths: the same model on CUDA as on the CPU, mixed precision, the recipe with --ngpu 1.

Skipped on machines without CUDA (CI has none). Run them where a GPU is:
``python -m pytest test/test_cuda.py -v``.
"""

import copy

import pytest
import torch
from espnet2.torch_utils.device_funcs import to_device
from conftest import ASR_TEXTS, EMOTIONS, toy_wave
from test_hf_local import hf_dirs  # noqa: F401  (fixtures, shared)
from test_model import batch_for, overfit_model  # noqa: F401

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.tasks import HarmoniFuseTask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FROZEN = {"backbone_conf": {"freeze": True}}


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 on the GPU as on the CPU: no TF32 in convolutions and matrix products while comparing."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def both_tasks(args):
    asr = batch_for(args, [(toy_wave(i, 0.4 + 0.1 * i), t) for i, t in enumerate(ASR_TEXTS)], 0)
    ser = batch_for(args, [(toy_wave(100 + i, 0.5), e) for i, e in enumerate(EMOTIONS)], 1)
    return asr, ser


@pytest.mark.parametrize("frozen", [False, True])
def test_loss_and_gradients_on_cuda_equal_the_cpus(make_args, frozen):
    """Every tensor the model makes inside forward (masks, prompt ids, positions) must follow the input's device."""
    args = make_args(**FROZEN, model_conf={"prompt_sampling": "first"}) if frozen else make_args(model_conf={"prompt_sampling": "first"})
    torch.manual_seed(0)
    cpu = HarmoniFuseTask.build_model(args).eval()  # eval: no dropout, so both devices compute the same function
    gpu = copy.deepcopy(cpu).cuda()
    for batch in both_tasks(args):
        cpu.zero_grad(), gpu.zero_grad()
        want, stats, _ = cpu(**batch)
        got, gstats, _ = gpu(**to_device(batch, "cuda"))
        assert got.device.type == "cuda"
        assert torch.allclose(got.cpu(), want, rtol=1e-4, atol=1e-5), (float(got), float(want))
        assert abs(float(gstats["acc"]) - float(stats["acc"])) < 1e-6
        want.backward(), got.backward()
        for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
            if p.grad is None:
                assert q.grad is None, name
                continue
            assert q.grad.device.type == "cuda", name
            assert torch.allclose(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-5), name
    backbone_grads = [p.grad for p in gpu.backbone.parameters()]
    assert all(g is None for g in backbone_grads) if frozen else any(g is not None for g in backbone_grads)


def test_state_cache_on_cuda(make_args):
    args = make_args(**FROZEN, model_conf={"cache_backbone_states": True, "prompt_sampling": "first"})
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args).cuda().eval()
    plain = HarmoniFuseTask.build_model(make_args(**FROZEN, model_conf={"prompt_sampling": "first"})).cuda().eval()
    plain.load_state_dict(model.state_dict())
    batch = to_device(both_tasks(args)[0], "cuda")
    want = plain(**batch)[0]
    assert torch.allclose(model(**batch)[0], want)
    loss = model(**batch)[0]
    assert model.state_cache.hits == len(ASR_TEXTS) and torch.allclose(loss, want)
    loss.backward()
    assert model.fusion.layer_logits.grad.abs().sum() > 0


def test_decoding_on_cuda_gives_the_cpus_answers(overfit_model):  # noqa: F811
    hf, asr, ser = overfit_model
    model = HarmoniFuseTask.build_model(hf.args)  # (a deepcopy fails: ESPnet's attention keeps its last weights)
    model.load_state_dict(hf.model.state_dict())
    gpu = HarmoniFuse(model.cuda(), hf.args, device="cuda")
    for batch, task, kwargs in ((asr, "asr", {}), (asr, "asr", {"beam_size": 3}), (ser, "ser", {}),
                                (ser, "ser", {"label_decoding": "generate"})):
        want = hf.decode_tensors(batch["speech"], batch["speech_lengths"], task, **kwargs)
        got = gpu.decode_tensors(batch["speech"], batch["speech_lengths"], task, **kwargs)
        assert [r["text"] for r in got] == [r["text"] for r in want], (task, kwargs)
        assert all(abs(g["score"] - w["score"]) < 1e-3 for g, w in zip(got, want)), (task, kwargs)
    assert [r["text"] for r in gpu.decode([toy_wave(0, 0.6), toy_wave(1, 0.6)], "asr")] == ASR_TEXTS[:2]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_hf_backbone_and_lora_llm_train_under_autocast(hf_dirs, tmp_path, dtype):  # noqa: F811
    """The real-checkpoint path (WavLM + Qwen2 + LoRA from local dirs) as ESPnet's --use_amp runs it."""
    from test_hf_local import asr_batch, hf_args

    args = hf_args(tmp_path, hf_dirs)
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args).cuda().train()
    batch = to_device(asr_batch(args, n=3), "cuda")
    with torch.autocast("cuda", dtype=dtype):
        loss, stats, _ = model(**batch)
    assert torch.isfinite(loss) and stats["loss_asr"] > 0
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    scaler.scale(loss).backward()
    named = dict(model.named_parameters())
    lora = [p for k, p in named.items() if "lora_B" in k]
    assert lora and all(p.grad is not None and torch.isfinite(p.grad).all() for p in lora)
    assert any(p.grad.abs().sum() > 0 for p in lora)
    assert named["fusion.layer_logits"].grad.abs().sum() > 0
    assert all(p.grad is None for k, p in named.items() if k.startswith("backbone."))
    # and decoding with that model on the GPU stays inside the label set
    hf = HarmoniFuse(model, args, device="cuda")
    out = hf.decode([toy_wave(5, 0.5)], "ser")
    assert out[0]["text"] in EMOTIONS


def test_recipe_trains_and_decodes_on_the_gpu(tmp_path):
    """The mini_emo recipe at smoke size with --ngpu 1 (mixed precision) and GPU decoding."""
    from test_recipe_e2e import run_recipe

    recipe, model_dir, _ = run_recipe(tmp_path, "--ngpu", "1", "--inference_ngpu", "1", "--train_args", "--use_amp true")
    train_log = (model_dir / "train.log").read_text()
    assert "gpu_max_cached_mem_GB" in train_log  # ESPnet's reporter writes it only for a CUDA run
    assert "use_amp: true" in (model_dir / "config.yaml").read_text()
    results = (model_dir / "RESULTS.md").read_text()
    assert "WER" in results and "UA" in results
    decode_logs = list(model_dir.glob("decode*/*/logdir/decode.*.log"))
    assert decode_logs and all(" on cuda" in log.read_text() for log in decode_logs)
