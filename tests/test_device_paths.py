"""The library's GPU code paths, checked on a CPU with the fake GPU of ``fake_cuda.py``.

Each test moves a model to ``cuda`` (a tagged CPU model inside ``fake_cuda()``), calls the
library the way the notebooks do, and expects no finding: no CPU tensor meets a GPU one,
no draw uses a generator on the wrong device, and results come back where promised.
"""

import numpy as np
import pytest
import torch

from aigc_helpers import get_device, set_seed
from aigc_helpers.decoding import sample_next
from aigc_helpers.diffusion import DDPM, DDPMConfig
from aigc_helpers.gpt import GPT, GPTConfig
from aigc_helpers.responsible import (WatermarkProcessor, green_count, green_lists, sample_with_processor, substitute,
                                      watermark_z)
from aigc_helpers.train import train
from aigc_helpers.unet import UNet, UNetConfig
from fake_cuda import fake_cuda


def tiny_gpt():
    set_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))


# ---------------------------------------------------------------- the checker itself


def test_fake_cuda_reports_the_mistakes_a_gpu_rejects():
    with fake_cuda() as findings:
        device = get_device()
        assert device.type == "cuda"
        layer = torch.nn.Linear(4, 3).to(device)
        assert layer.weight.device.type == "cuda" and layer.weight.is_cuda
        layer(torch.randn(2, 4))                                           # CPU input, GPU weights
        y = layer(torch.randn(2, 4).to(device))
        assert y.device.type == "cuda"
        torch.multinomial(y.softmax(-1), 1, generator=torch.Generator().manual_seed(0))   # CPU generator
        np.asarray(y.detach())                                             # numpy of a GPU tensor
    kinds = sorted(f.split(":")[0] for f in findings)
    assert kinds == ["generator", "mixed", "numpy"], findings
    assert torch.Generator is torch._C.Generator                          # everything restored
    assert torch.randn(2).device.type == "cpu"


def test_fake_cuda_accepts_correct_gpu_code():
    with fake_cuda() as findings:
        device = get_device()
        layer = torch.nn.Linear(4, 3).to(device)
        x = torch.randn(2, 4, device=device)
        y = layer(x)[torch.tensor([1, 0])] * torch.tensor(2.0)              # CPU index and CPU scalar: allowed
        g = torch.Generator(device=device).manual_seed(0)
        picks = torch.multinomial(y.softmax(-1), 1, generator=g)
        y.detach().cpu().numpy()
        assert picks.device.type == "cuda" and g.device.type == "cuda"
    assert findings == []


# ---------------------------------------------------------------- the library on a GPU


def test_generate_on_gpu_with_a_cpu_generator():
    model = tiny_gpt()
    cpu_out = model.generate(torch.tensor([[1, 2]]), 6, generator=torch.Generator().manual_seed(3))
    with fake_cuda() as findings:
        model.to("cuda")
        out = model.generate(torch.tensor([[1, 2]], device="cuda"), 6, generator=torch.Generator().manual_seed(3))
        assert out.device.type == "cuda"
        model.to("cpu")
    assert findings == []
    assert torch.equal(out, cpu_out)                                       # the same draws as on the CPU


def test_sample_next_returns_tokens_on_the_logits_device():
    with fake_cuda() as findings:
        logits = torch.randn(4, 9, device="cuda")
        for gen in (torch.Generator().manual_seed(0), torch.Generator("cuda").manual_seed(0), None):
            ids = sample_next(logits, 0.8, top_k=5, generator=gen)
            assert ids.device.type == "cuda"
    assert findings == []


def test_sample_with_processor_on_gpu_with_cpu_prompts():
    model = tiny_gpt()
    prompts = torch.tensor([[1, 2, 3], [4, 5, 6]])
    proc = WatermarkProcessor(11, 0.5, delta=torch.tensor([0.0, 2.0]), key=0)
    ids_cpu, logp_cpu = sample_with_processor(model, prompts, 5, proc, generator=torch.Generator().manual_seed(1))
    with fake_cuda() as findings:
        model.to("cuda")
        ids, logp = sample_with_processor(model, prompts, 5, proc, generator=torch.Generator().manual_seed(1))
        assert ids.device.type == "cpu" and logp.device.type == "cpu"      # back where the prompts were
        model.to("cpu")
    assert findings == []
    assert torch.equal(ids, ids_cpu) and torch.allclose(logp, logp_cpu)


def test_training_loop_on_gpu():
    model = tiny_gpt()
    data = torch.randint(0, 11, (200,))
    g = torch.Generator().manual_seed(0)

    def batch():
        ix = torch.randint(0, len(data) - 9, (4,), generator=g)
        return data[ix[:, None] + torch.arange(8)], data[ix[:, None] + torch.arange(1, 9)]

    with fake_cuda() as findings:
        history = train(model, batch, 3, lr=1e-3, progress=False)          # device: get_device(), "cuda"
        assert next(model.parameters()).device.type == "cuda"
        model.to("cpu")
    assert findings == []
    assert len(history.loss) == 3


def test_ddpm_sampling_on_gpu_with_cpu_labels_and_noise():
    set_seed(0)
    net = UNet(UNetConfig(image_size=8, base=8, mults=(1, 2), t_dim=8, groups=4, n_classes=10))
    ddpm = DDPM(net, (1, 8, 8), DDPMConfig(T=5))
    with fake_cuda() as findings:
        ddpm.to("cuda")
        x_T = torch.randn(3, 1, 8, 8)
        out = ddpm.sample_ddim(3, steps=3, labels=torch.tensor([1, 2, 3]), x_T=x_T, guidance_scale=2.0)
        assert out.device.type == "cuda"
        ddpm.sample(3, labels=[4, 5, 6], generator=torch.Generator("cuda").manual_seed(0))
        ddpm.to("cpu")
    assert findings == []


def test_watermark_detector_and_edits_on_gpu_ids():
    ids = torch.randint(0, 11, (3, 20), generator=torch.Generator().manual_seed(0))
    green = green_lists(11, 0.5, key=0)
    edited_cpu = substitute(ids, 0.3, 11, torch.Generator().manual_seed(4))
    z_cpu = {u: watermark_z(ids, green, unique=u) for u in (False, True)}
    with fake_cuda() as findings:
        gpu_ids = ids.to("cuda")
        for u in (False, True):
            count, n = green_count(gpu_ids, green, unique=u)              # CPU key table, GPU text
            assert count.device.type == "cuda" and n.device.type == "cuda"
            assert torch.allclose(watermark_z(gpu_ids, green, unique=u).cpu(), z_cpu[u])
        edited = substitute(gpu_ids, 0.3, 11, torch.Generator().manual_seed(4))
        assert edited.device.type == "cuda"
        assert torch.equal(edited.cpu(), edited_cpu)                        # the same edits as on the CPU
    assert findings == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a real CUDA GPU")
def test_generate_on_a_real_gpu_with_a_cpu_generator():
    model = tiny_gpt()
    cpu_out = model.generate(torch.tensor([[1, 2]]), 6, generator=torch.Generator().manual_seed(3))
    model.to("cuda")
    out = model.generate(torch.tensor([[1, 2]], device="cuda"), 6, generator=torch.Generator().manual_seed(3))
    assert out.device.type == "cuda" and torch.equal(out.cpu(), cpu_out)
