"""FP8 self-attention through cuDNN's own frontend, against bf16 SDPA, at the DiT's shape (1x16x31104x128).

torch's SDPA takes no FP8 inputs (dit_probe), so this builds cuDNN's FP8 SDPA graph directly: q, k, v quantised
per tensor to e4m3 (scale = 448 / amax), softmax probabilities scaled by 448, output in e4m3 scaled by v's scale
(Hopper with cuDNN < 9.13 has no bf16 output). Prints the kernel time, the time with the (unfused) quantisation,
and the relative error against bf16 SDPA; flash-vs-cuDNN bf16 gives the error scale of a harmless change.
Needs `pip install nvidia-cudnn-frontend==1.14.1` (not a project dependency) and an sm90 GPU.

    python benchmarks/fp8_attention.py
"""

import math
import statistics
import time

import cudnn
import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, H, S, D = 1, 16, 31104, 128
dev = "cuda"
q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
q = (q / q.float().norm(dim=-1, keepdim=True) * D**0.5 * 2).bfloat16()   # QK-normed, a little sharper than uniform
k = (k / k.float().norm(dim=-1, keepdim=True) * D**0.5).bfloat16()
ref = F.scaled_dot_product_attention(q, k, v).float()

def bench(fn, n=10):
    fn(); torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        torch.cuda.synchronize(); s = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - s)
    return statistics.median(ts) * 1e3

print("bf16 cuDNN SDPA ms", round(bench(lambda: F.scaled_dot_product_attention(q, k, v)), 2))
E4M3 = torch.finfo(torch.float8_e4m3fn).max
handle = cudnn.create_handle()
cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream().cuda_stream)
f8, f32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT

def build(out_type):
    g = cudnn.pygraph(io_data_type=f8, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    shape, stride = [B, H, S, D], [H * S * D, S * D, D, 1]
    tq, tk, tv = (g.tensor(name=n, dim=shape, stride=stride, data_type=f8) for n in "qkv")
    sc = [g.tensor(name=n, dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32) for n in ("dq", "dk", "dv", "ds", "ss", "so")]
    o, _, amax_s, amax_o = g.sdpa_fp8(q=tq, k=tk, v=tv, descale_q=sc[0], descale_k=sc[1], descale_v=sc[2],
                                      descale_s=sc[3], scale_s=sc[4], scale_o=sc[5], is_inference=True,
                                      attn_scale=1.0 / math.sqrt(D), use_causal_mask=False, name="sdpa")
    o.set_output(True).set_dim(shape).set_stride(stride).set_data_type(out_type)
    for a in (amax_s, amax_o):
        a.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(f32)
    g.validate(); g.build_operation_graph(); g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support(); g.build_plans()
    return g, (tq, tk, tv, *sc, o, amax_s, amax_o)

def quant(x):
    amax = x.abs().amax().float()
    scale = E4M3 / amax
    return (x.float() * scale).to(torch.float8_e4m3fn), scale

for out_name, out_type, out_dtype in (("bf16 out", cudnn.data_type.BFLOAT16, torch.bfloat16), ("fp8 out", f8, torch.float8_e4m3fn)):
    try:
        g, (tq, tk, tv, dq, dk, dv, ds, ss, so, to, tas, tao) = build(out_type)
        (q8, sq), (k8, sk), (v8, sv) = quant(q), quant(k), quant(v)
        one = lambda x: x.reshape(1, 1, 1, 1).float().contiguous()
        scale_s = torch.full((1, 1, 1, 1), E4M3, device=dev)
        scale_o = one(sv) if out_dtype == torch.float8_e4m3fn else torch.ones(1, 1, 1, 1, device=dev)
        o = torch.empty(B, H, S, D, device=dev, dtype=out_dtype)
        amax_s, amax_o = torch.zeros(1, 1, 1, 1, device=dev), torch.zeros(1, 1, 1, 1, device=dev)
        ws = torch.empty(g.get_workspace_size(), device=dev, dtype=torch.uint8)
        pack = {tq: q8, tk: k8, tv: v8, dq: one(1 / sq), dk: one(1 / sk), dv: one(1 / sv), ds: 1 / scale_s,
                ss: scale_s, so: scale_o, to: o, tas: amax_s, tao: amax_o}
        run = lambda: g.execute(pack, ws, handle=handle)
        run(); torch.cuda.synchronize()
        out = o.float() / scale_o
        err = ((out - ref).norm() / ref.norm()).item()
        ms = bench(run)
        def full():
            (a, _), (b_, _), (c, _) = quant(q), quant(k), quant(v)
            pack.update({tq: a, tk: b_, tv: c})
            run()
        print(out_name, "OK: kernel ms", round(ms, 2), "with quantisation (unfused) ms", round(bench(full), 2),
              "rel err", round(err, 4), "amax_s", amax_s.item(), "amax_o", amax_o.item())
    except Exception as e:
        print(out_name, "FAILED:", type(e).__name__, str(e)[:400])
print("error scale of a harmless change: ", end="")
with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.FLASH_ATTENTION]):
    print(round(((F.scaled_dot_product_attention(q, k, v).float() - ref).norm() / ref.norm()).item(), 5), "(flash vs cuDNN, both bf16)")
print(torch.__version__, torch.backends.cudnn.version(), cudnn.backend_version())
