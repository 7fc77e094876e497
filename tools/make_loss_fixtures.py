#!/usr/bin/env python3
"""Golden values for tests/unit/test_losses.c, computed with PyTorch autograd.

DPO, PRO, SFT and the DEFT term are written here directly from their
formulas (docs/training.md), in float64, independently of the C code. TRL's
DPO sigmoid loss lives inline in DPOTrainer's loss method and cannot be
called on its own, so DPO is the same formula written in torch here
(-logsigmoid(beta * delta)). Inputs are rounded to float32 before the golden
values are computed, so the C side reads exactly the numbers used here.

Usage: .venv/bin/python tools/make_loss_fixtures.py [out.json]
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(20260401)
DT = torch.float64


def f32(x):
    """Round to float32 and back, so the fixture holds exactly what C reads."""
    return torch.as_tensor(x, dtype=DT).to(torch.float32).to(DT)


def rand_logp(n):
    # log-probs of sampled tokens: negative, spread like a real model's
    return f32(-torch.rand(n, dtype=DT) * 6.0 - 0.01)


def make_sample(lengths, rewards=None, ref_shift=0.0, r_q=0.0, logp=None):
    resp = []
    for k, n in enumerate(lengths):
        lp = rand_logp(n) if logp is None else f32(logp[k])
        ref = float(f32(lp.sum() + ref_shift * torch.randn(1, dtype=DT)).item())
        resp.append({"logp": lp.requires_grad_(True), "ref_sum": ref})
    return {"resp": resp, "rewards": rewards, "r_q": float(f32(r_q).item())}


# ----------------------------------------------------------------------------
# the objectives, per sample


def sft_nll(y1):
    lp = y1["logp"]
    if lp.numel() == 0:
        return lp.sum() * 0.0
    return -lp.mean()


def dpo(sample, beta):
    resp = sample["resp"]
    w = resp[0]
    rw = w["logp"].sum() - w["ref_sum"]
    losses, accs, rej = [], [], []
    for l in resp[1:]:
        rl = l["logp"].sum() - l["ref_sum"]
        z = beta * (rw - rl)
        losses.append(-F.logsigmoid(z))
        accs.append(float(z.item() > 0))
        rej.append(beta * rl.item())
    chosen = beta * rw.item()
    stats = {"acc": sum(accs) / len(accs), "chosen_reward": chosen,
             "rejected_reward": sum(rej) / len(rej),
             "margin": chosen - sum(rej) / len(rej)}
    return torch.stack(losses).mean(), stats


def pro(sample):
    resp = sample["resp"]
    n = len(resp)
    r = sample["rewards"] if sample["rewards"] is not None else [n - 1 - k for k in range(n)]
    r = [float(x) for x in r]
    s = [x["logp"].sum() / max(x["logp"].numel(), 1) for x in resp]
    total = 0.0
    for k in range(n - 1):
        gaps = torch.tensor([r[k] - r[j] for j in range(k + 1, n)], dtype=DT)
        gkk = gaps.max()
        terms = torch.cat([(s[k] * gkk).reshape(1), torch.stack(s[k + 1:]) * gaps])
        total = total + torch.logsumexp(terms, 0) - s[k] * gkk
    sv = [x.item() for x in s]
    best_other = max(sv[1:])
    stats = {"acc": float(sv[0] > best_other), "margin": sv[0] - best_other}
    return total, stats


def run_case(name, kind, samples, n_global, beta=0.1, w_sft=0.05, omega=0.0):
    tot = {"total": 0.0, "pref": 0.0, "sft": 0.0, "deft": 0.0, "r_q": 0.0, "nll": 0.0,
           "acc": 0.0, "margin": 0.0, "chosen_reward": 0.0, "rejected_reward": 0.0}
    objective = 0.0
    for s in samples:
        nll = sft_nll(s["resp"][0])
        st = {}
        if kind == "sft":
            pref = torch.zeros((), dtype=DT)
            sft = nll
        elif kind == "dpo":
            pref, st = dpo(s, beta)
            sft = w_sft * nll
        else:
            pref, st = pro(s)
            l = len(s["resp"])
            sft = (l - 1) ** 2 * w_sft * (-s["resp"][0]["logp"].sum())
        deft = -omega * s["r_q"]
        objective = objective + (pref + sft + deft) / n_global
        tot["pref"] += pref.item() / n_global
        tot["sft"] += sft.item() / n_global
        tot["deft"] += deft / n_global
        tot["r_q"] += s["r_q"] / n_global
        tot["nll"] += nll.item() / n_global
        for k, v in st.items():
            tot[k] += v / n_global
        tot["total"] += (pref.item() + sft.item() + deft) / n_global
    leaves = [x["logp"] for s in samples for x in s["resp"]]
    grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    gi = 0
    out = []
    for s in samples:
        rs = []
        for x in s["resp"]:
            g = grads[gi]
            gi += 1
            if g is None:
                g = torch.zeros_like(x["logp"])
            rs.append({"logp": x["logp"].tolist(), "ref_sum": x["ref_sum"], "grad": g.tolist()})
        rec = {"resp": rs, "r_q": s["r_q"]}
        if s["rewards"] is not None:
            rec["rewards"] = [float(v) for v in s["rewards"]]
        out.append(rec)
    return {"name": name, "kind": kind, "beta": beta, "w_sft": w_sft, "omega": omega,
            "n_global": n_global, "samples": out, "expect": tot}


# ----------------------------------------------------------------------------
# logits-side golden values


def logits_cases():
    T, V, d = 5, 11, 7
    z = f32(torch.randn(T, V, dtype=DT) * 3.0)
    # Q_diff from counts with power-of-two totals: exact in float32, sums to exactly 0
    cp = torch.tensor([3, 0, 5, 1, 0, 2, 0, 4, 1, 0, 0], dtype=DT)    # sum 16
    cm = torch.tensor([1, 6, 2, 0, 9, 3, 4, 0, 2, 3, 2], dtype=DT)    # sum 32
    q = cp / 16 - cm / 32
    assert q.sum().item() == 0.0
    omega, scale = 0.37, 0.25

    zl = z.clone().requires_grad_(True)
    rq_literal = (F.log_softmax(zl, dim=-1).mean(0) * q).sum()
    (g_deft,) = torch.autograd.grad(-omega * scale * rq_literal, zl)

    y = torch.randint(0, V, (T,))
    g = f32(torch.randn(T, dtype=DT))
    zl2 = z.clone().requires_grad_(True)
    obj = (g * F.log_softmax(zl2, dim=-1)[torch.arange(T), y]).sum()
    (g_logp,) = torch.autograd.grad(obj, zl2)

    h = f32(torch.randn(T, d, dtype=DT))
    w = f32(torch.randn(V, d, dtype=DT) * 0.5)
    zh = h @ w.T
    rq_hidden_literal = (F.log_softmax(zh, dim=-1).mean(0) * q).sum()
    return {"T": T, "V": V, "d": d, "z": z.flatten().tolist(), "qdiff": q.tolist(),
            "omega": omega, "scale": scale, "rq_literal": rq_literal.item(),
            "dlogits_deft": g_deft.flatten().tolist(),
            "y": y.tolist(), "g": g.tolist(), "dlogits_logp": g_logp.flatten().tolist(),
            "h": h.flatten().tolist(), "w_head": w.flatten().tolist(),
            "rq_hidden_literal": rq_hidden_literal.item()}


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses/losses.json"
    cases = []

    # DPO: mixed lengths, l = 2, 3, 4; global count larger than this micro-batch
    ss = [make_sample([7, 3], ref_shift=2.0, r_q=0.8),
          make_sample([1, 12], ref_shift=2.0, r_q=-0.3),
          make_sample([5, 9, 4], ref_shift=3.0, r_q=0.1),
          make_sample([6, 2, 8, 3], ref_shift=3.0, r_q=1.5)]
    cases.append(run_case("dpo_mixed", "dpo", ss, n_global=6, beta=0.1, w_sft=0.05,
                          omega=0.02))
    # DPO far out in both tails: softplus must neither overflow nor lose the gradient
    ss = [make_sample([4, 4], logp=[[-0.1] * 4, [-60.0] * 4]),
          make_sample([3, 3], logp=[[-70.0] * 3, [-0.2] * 3]),
          make_sample([2, 2], logp=[[-1.5, -2.5], [-2.5, -1.5]])]   # a tie: delta 0
    for s in ss:
        for x in s["resp"]:
            x["ref_sum"] = 0.0
    cases.append(run_case("dpo_extreme", "dpo", ss, n_global=3, beta=2.0, w_sft=0.0))

    # PRO with rewards (one with tied lower rewards), l = 2, 3, 4
    ss = [make_sample([6, 4], rewards=[1.7, -0.4], r_q=0.2),
          make_sample([3, 8, 5], rewards=[2.0, 1.0, 1.0], r_q=-0.6),
          make_sample([9, 2, 4, 7], rewards=[3.25, 1.5, 0.0, -2.75], r_q=0.05)]
    cases.append(run_case("pro_rewards", "pro", ss, n_global=5, w_sft=0.05, omega=0.1))
    # PRO without rewards: rank rewards l - k
    ss = [make_sample([5, 5, 3]), make_sample([2, 6]), make_sample([4, 1, 7, 3])]
    cases.append(run_case("pro_ranks", "pro", ss, n_global=3, w_sft=0.05))
    # PRO with a huge reward gap: exp(s * g) far below the float range
    ss = [make_sample([3, 3], rewards=[120.0, 0.0], logp=[[-4.0, -6.0, -5.0], [-1.0] * 3]),
          make_sample([2, 3, 2], rewards=[50.0, 50.0, -10.0])]
    cases.append(run_case("pro_extreme", "pro", ss, n_global=2, w_sft=0.0))

    # SFT with an empty response among the samples
    ss = [make_sample([5, 2]), make_sample([0, 3]), make_sample([11, 4])]
    cases.append(run_case("sft_empty", "sft", ss, n_global=3))

    doc = {"cases": cases, "logits": logits_cases()}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path}: {len(cases)} loss cases")


if __name__ == "__main__":
    main()
