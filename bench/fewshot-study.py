#!/usr/bin/python3
# Teaching methods compared outside the engine, on features and base models that
# `petal fewshot DATA --dump-study DIR` (and `--study-holdout-bank`) wrote. A numpy copy of
# teach.cpp's residual unit (the baseline; it lands within 2 points of the C++ numbers, its draws
# differ) and the variants docs/fewshot.md reports. 3 draws per class and k.
# Needs Debian's python3-numpy:  /usr/bin/python3 bench/fewshot-study.py DIR
# CEILING=1 ... DIR instead: how far the residual unit's new-class score can separate the new class
# from the old ones at all (any bias), from k photos up to all of them.
# CORRECTIONS=1 ... DIR: whether corrected mistakes of the shipped model could fix other photos.
import json, struct, sys, math, os
import numpy as np

if len(sys.argv) != 2:
    sys.exit('usage: fewshot-study.py DIR  (a folder written by petal fewshot DATA --dump-study DIR)')
DIR = sys.argv[1]


def load_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            out[k] = v
            continue
        dt = {'F32': np.float32, 'I32': np.int32, 'F16': np.float16}[v['dtype']]
        a, b = v['data_offsets']
        out[k] = np.frombuffer(data[a:b], dtype=dt).reshape(v['shape']).astype(np.float32 if dt != np.int32 else np.int32)
    return out


F = load_st(f'{DIR}/features.safetensors')
NAMES = json.loads(F['__metadata__']['class_names'])
XTR, YTR = F['train.view0'], F['train.labels']
XVA, YVA = F['val.features'], F['val.labels']
C = len(NAMES)


def head_of(B):
    """The two dense layers of a Petal head bundle, as logits() takes them."""
    return dict(w1=B['head.dense1.weight'], b1=B['head.dense1.bias'], w2=B['head.dense2.weight'], b2=B['head.dense2.bias'])


def base_of(path):
    """A left-out class's base model as --dump-study writes it: its head, bank and kept classes."""
    B = load_st(path)
    return dict(head_of(B), bx=B['bank.features'], by=B['bank.labels'], keep=json.loads(B['__metadata__']['keep']))


BASES = {L: base_of(f'{DIR}/without-{n}.safetensors') for L, n in enumerate(NAMES)}


def logits(m, X):
    h = np.maximum(X @ m['w1'].T + m['b1'], 0)
    return h @ m['w2'].T + m['b2']


def adam_train(Z0, X, y, w_row, steps=200, lr=0.01, l2=0.0, newc=None):
    """One unit (new class, appended last) on inputs X, base scores Z0 (N x C0); softmax over C0+1."""
    N, D = X.shape
    w = np.zeros(D, np.float64); b = 0.0
    mw = np.zeros(D); vw = np.zeros(D); mb = vb = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-7
    ws = w_row / w_row.sum()
    for t in range(1, steps + 1):
        u = X @ w + b
        Z = np.concatenate([Z0, u[:, None]], 1)
        Z = Z - Z.max(1, keepdims=True)
        P = np.exp(Z); P /= P.sum(1, keepdims=True)
        g = (P[:, -1] - (y == Z0.shape[1])) * ws
        gw = X.T @ g + l2 * w
        gb = g.sum()
        lrt = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        mw = b1 * mw + (1 - b1) * gw; vw = b2 * vw + (1 - b2) * gw * gw; w -= lrt * mw / (np.sqrt(vw) + eps)
        mb = b1 * mb + (1 - b1) * gb; vb = b2 * vb + (1 - b2) * gb * gb; b -= lrt * mb / (math.sqrt(vb) + eps)
    return w, b


def unit_in(X, center, power=1.0):
    if power != 1.0:
        X = np.power(np.maximum(X, 0), power)
    Xc = X - center
    n = np.linalg.norm(Xc, axis=1, keepdims=True)
    return Xc / np.maximum(n, 1e-12)


def method_residual(m, xk, T=3.0, power=1.0, halluc=0, steps=200, lr=0.01, l2=0.0, rep_max=10, halluc_scale=1.0, extra=None):
    k = len(xk)
    C0 = len(m['keep'])
    bx, by = m['bx'], m['by']
    typical = int(np.median(np.bincount(by)))
    rep = max(1, min(rep_max, -(-typical // k)))
    rows = [bx]; ys = [by]; wr = [np.ones(len(by))]
    rows.append(np.repeat(xk, rep, 0)); ys.append(np.full(k * rep, C0)); wr.append(np.full(k * rep, min(1.0, typical / (k * rep))))
    if halluc:
        # nearest old class mean to the new photos' mean, its within-class deviations transplanted
        mu = xk.mean(0)
        means = np.stack([bx[by == c].mean(0) for c in range(C0)])
        d = np.linalg.norm(means - mu, axis=1)
        order = np.argsort(d)[:halluc]
        syn = []
        for c in order:
            dev = bx[by == c] - means[c]
            syn.append(np.maximum(mu + halluc_scale * dev, 0))
        syn = np.concatenate(syn)
        rows.append(syn); ys.append(np.full(len(syn), C0)); wr.append(np.ones(len(syn)))
    X = np.concatenate(rows); y = np.concatenate(ys); w_row = np.concatenate(wr)
    # as teach.cpp: the model's scores ÷ T·√(10/k) in use (at least 1), ÷ at least T in training
    soften = T * math.sqrt(10 / k)
    scale = 1 / max(1.0, soften) if T > 0 else 1.0
    src = np.power(np.maximum(bx, 0), power) if power != 1 else bx
    center = src.mean(0)
    U = unit_in(X, center, power)
    Z0 = logits(m, X)
    if m.get('bank_logits') is not None:
        Z0[:len(by)] = m['bank_logits']
    Z0 = Z0 / max(T, soften) if T > 0 else Z0
    w, b = adam_train(Z0, U, y, w_row, steps=steps, lr=lr, l2=l2)

    def margin(Xq):  # the new class's score over the best old one
        return unit_in(Xq, center, power) @ w + b - (logits(m, Xq) * scale).max(1)

    def predict(Xq):
        z0 = logits(m, Xq) * scale
        u = unit_in(Xq, center, power) @ w + b
        return np.argmax(np.concatenate([z0, u[:, None]], 1), 1)
    predict.margin = margin
    return predict


def evaluate(method, ks=(5, 10), draws=3, classes=None, **kw):
    res = {}
    for k in ks:
        R = []
        for L in (classes if classes is not None else range(C)):
            m = BASES[L]
            keep = m['keep']
            yv = np.array([keep.index(v) if v in keep else len(keep) for v in YVA])
            new = len(keep)
            pool = np.where(YTR == L)[0]
            before = np.argmax(logits(m, XVA), 1)
            old = yv != new
            ob = (before[old] == yv[old]).mean()
            for dr in range(draws):
                rng = np.random.default_rng(1000 * L + 10 * k + dr)
                pick = rng.choice(pool, k, replace=False)
                pred = method(m, XTR[pick], **kw)(XVA)
                tp = ((pred == new) & ~old).sum(); fp = ((pred == new) & old).sum()
                R.append((tp / (~old).sum(), tp / max(1, tp + fp), ob, (pred[old] == yv[old]).mean()))
        R = np.array(R) * 100
        res[k] = R.mean(0)
    return res


def ceiling(method, ks=(5, 10, 20, 50, 0), draws=3, fprs=(0.01, 0.02, 0.05), **kw):
    """How many of the new class's validation photos a method's new-class margin can find while it
    takes at most 1 / 2 / 5 % of the old classes' photos, whatever the bias (k = 0: every training
    photo of the class). Losing at most 1 point of the old classes is the issue's rule."""
    for k in ks:
        R = []
        for L in range(C):
            pool = np.where(YTR == L)[0]
            isnew = YVA == L
            for dr in range(draws if k else 1):
                pick = np.random.default_rng(1000 * L + 10 * k + dr).choice(pool, k, replace=False) if k else pool
                s = method(BASES[L], XTR[pick], **kw).margin(XVA)
                R.append([(s[isnew] > np.quantile(s[~isnew], 1 - f, method='higher')).mean() for f in fprs])
        R = np.array(R).mean(0) * 100
        print(f'  k = {k or "all (~470)":>10}: ' + '  '.join(f'{r:5.1f} % at {100 * f:.0f} %' for r, f in zip(R, fprs)), flush=True)


def corrections_reach(taus=(0.9, 0.8, 0.7, 0.65, 0.6, 0.5), draws=10, n=20):
    """Corrections: could n of the shipped model's validation mistakes, relabelled, fix any of the
    other validation photos? The most local rule there is: a photo whose nearest corrected photo is
    closer than tau (cosine of centred features) takes that photo's class."""
    m = head_of(load_st(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'model', 'flowers-head.safetensors')))
    pred = np.argmax(logits(m, XVA), 1)
    wrong = np.where(pred != YVA)[0]
    U = unit_in(XVA, XTR.mean(0))
    S = U @ U.T
    print(f'the shipped model: {len(wrong)} of {len(YVA)} validation photos wrong; {n} of them corrected, {draws} draws')
    for tau in taus:
        fixed = broken = 0
        for dr in range(draws):
            pick = np.random.default_rng(dr).choice(wrong, min(n, len(wrong)), replace=False)
            others = np.setdiff1d(np.arange(len(YVA)), pick)
            s = S[np.ix_(others, pick)]
            near = s.max(1) > tau
            p = pred[others].copy()
            p[near] = YVA[pick][s.argmax(1)[near]]
            fixed += ((p == YVA[others]) & (pred[others] != YVA[others])).sum()
            broken += ((p != YVA[others]) & (pred[others] == YVA[others])).sum()
        print(f'  cosine > {tau:.2f}: {fixed / draws:4.1f} other photos fixed, {broken / draws:4.1f} broken per draw', flush=True)
    same = YVA[wrong][:, None] == YVA[wrong][None, :]
    sw = np.where(same & ~np.eye(len(wrong), dtype=bool), S[np.ix_(wrong, wrong)], -1).max(1)
    ok = np.where(pred == YVA)[0]
    so = np.where(YVA[ok][:, None] != YVA[wrong][None, :], S[np.ix_(ok, wrong)], -1).max(1)
    print(f'  a mistake to the nearest other mistake of its class: cosine at most {sw.max():.2f}; '
          f'a right photo to the nearest mistake of another class: up to {so.max():.2f}')


def show(name, res):
    s = '  '.join(f'k={k}: rec {r[0]:5.1f} prec {r[1]:5.1f} old {r[2]:5.1f}->{r[3]:5.1f}' for k, r in res.items())
    print(f'{name:40s} {s}', flush=True)





if __name__ == '__main__':
    if os.environ.get('CEILING'):
        print('new-class photos found while the old classes lose at most 1 / 2 / 5 % (residual unit, any bias):')
        ceiling(method_residual)
        sys.exit(0)
    if os.environ.get('CORRECTIONS'):
        corrections_reach()
        sys.exit(0)
    show('residual unit, scores / 3 (teach.cpp)', evaluate(method_residual))
    show('... / 2', evaluate(method_residual, T=2))
    show('... / 4', evaluate(method_residual, T=4))
    show('... features square-rooted', evaluate(method_residual, power=0.5))
    show('... + nearest class spread', evaluate(method_residual, halluc=1))
    show('... + 2 nearest classes spread', evaluate(method_residual, halluc=2))
    show('... + nearest class spread x0.5', evaluate(method_residual, halluc=1, halluc_scale=0.5))
    show('... + spread x0.5, / 2.5', evaluate(method_residual, halluc=1, halluc_scale=0.5, T=2.5))
    if os.path.exists(f'{DIR}/without-{NAMES[0]}-holdout.safetensors'):
        for L, n in enumerate(NAMES):
            BASES[L] = base_of(f'{DIR}/without-{n}-holdout.safetensors')
        for T in (1, 2, 3):
            show(f'bank held out of the base, / {T}', evaluate(method_residual, T=T))
