#!/usr/bin/env bash
# Training-step throughput of a small Llama, deft (CPU backend) vs PyTorch
# (transformers' LlamaForCausalLM, fp32, sdpa attention), the same shape,
# thread count and work: forward to logits, backward from fixed logit
# gradients. FLOPs per step = 6 * N * tokens + 12 * L * H * hd * T * tokens
# (N: parameters in matrix products, embedding lookup excluded). Prints both
# and the ratio deft / PyTorch.
#
# usage: bench/model.sh [BUILD_DIR] [THREADS] [extra bench_model flags, e.g. --vocab 2048]
# (run from the repository root)
set -euo pipefail
build=${1:-build}
threads=${2:-$(nproc)}
shift $(( $# > 2 ? 2 : $# ))
py=${PYTHON:-.venv/bin/python}
cmake --build "$build" --target bench_model >/dev/null
deft=$(OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$build/bench_model" "$@")
echo "$deft"
torch=$(OMP_NUM_THREADS=$threads "$py" - "$threads" "$deft" <<'PY'
import json, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

threads, ref = int(sys.argv[1]), json.loads(sys.argv[2])
torch.set_num_threads(threads)
# the shape bench_model used, read back from its output
B, T, V, d, F, L, H, KV = (ref[k] for k in ("B", "T", "V", "d", "F", "L", "H", "KV"))
cfg = LlamaConfig(vocab_size=V, hidden_size=d, intermediate_size=F,
                  num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV,
                  max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).float().train()
model.config.use_cache = False
n_mat = sum(p.numel() for n, p in model.named_parameters()
            if p.ndim == 2 and "embed_tokens" not in n)
assert n_mat == ref["params_matmul"], (n_mat, ref["params_matmul"])
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, V, (B, T), generator=g)
dlogits = torch.randn(B, T, V, generator=g) * 1e-4
flops = 6.0 * n_mat * B * T + 12.0 * L * H * (d // H) * T * B * T
times = []
for it in range(-1, 5):
    t0 = time.perf_counter()
    model.zero_grad(set_to_none=False)
    logits = model(ids).logits
    logits.backward(dlogits)
    dt = time.perf_counter() - t0
    if it >= 0:
        times.append(dt)
mean = sum(times) / len(times)
print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": threads,
                  "mean_s": round(mean, 4), "best_s": round(min(times), 4),
                  "tokens_per_s": round(B * T / mean, 1), "gflops": round(flops / mean / 1e9, 2)}))
PY
)
echo "$torch"
"$py" - "$deft" "$torch" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"deft / PyTorch, mean step: {b['mean_s'] / a['mean_s']:.2f}x "
      f"({a['tokens_per_s']:.0f} vs {b['tokens_per_s']:.0f} tokens/s; {a['gflops']:.1f} vs "
      f"{b['gflops']:.1f} GFLOP/s)")
print(f"deft / PyTorch, best step: {b['best_s'] / a['best_s']:.2f}x "
      f"({a['best_s']:.3f} s vs {b['best_s']:.3f} s)")
PY
