"""CIWAE (beta 0.5, k 64) side by side, cross-evaluated: vae's and pythae 0.1.2's trained models,
each under its own library's NLL estimator and under one common estimator (the same code and
noise for both), so that a difference of the models is told from one of the estimators.
Run with the python of pythae's venv (it imports both libraries; vaecli from the system site):

    /tmp/pythae-venv/bin/python benchmarks/ciwae_cross_eval.py EPOCHS SEED DATA_DIR

The setting is that of benchmarks/pythae_side_by_side.py (784-512-40, Adam 1e-3, batch 100, fp32,
the same static draw), on the first 500 test images with k=1000.
"""
# ruff: noqa: E402  (a script: the thread count is set before the libraries load)

import json
import math
import sys
import tempfile

sys.path.insert(0, __import__("os").path.dirname(__file__))
import torch

torch.set_num_threads(2)
import pythae_side_by_side as sbs
import torch.nn.functional as F
from torch import nn

import vaecli

EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 0
K, TEST = 1000, 500
DATA = sys.argv[3] if len(sys.argv) > 3 else "../shared/data"
train_u8, test_u8 = sbs.data(DATA, TEST)
test = test_u8.float() / 255


def common_nll(enc, logits_of, x, k=K, gen_seed=123):
    g = torch.Generator().manual_seed(gen_seed)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 50):
            xb = x[i : i + 50].reshape(-1, 784)
            mu, lv = enc(xb)
            b, d = mu.shape
            eps = torch.randn(b, k, d, generator=g)
            z = mu[:, None] + (0.5 * lv).exp()[:, None] * eps
            logits = logits_of(z.reshape(b * k, d)).reshape(b, k, 784)
            lpx = -F.binary_cross_entropy_with_logits(logits, xb[:, None].expand(b, k, 784), reduction="none").sum(-1)
            lpz = -0.5 * z.pow(2).sum(-1)
            lq = (-0.5 * eps.pow(2) - 0.5 * lv[:, None]).sum(-1)
            lw = lpx + lpz - lq
            out.append(torch.logsumexp(lw, 1) - math.log(k))
    return -torch.cat(out).mean().item()


# ours
with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(SEED)
    r = vaecli.train(
        dataset="mnist",
        data_dir=DATA,
        binarize="static",
        arch="mlp",
        arch_options={"hidden": [512], "activation": "relu"},
        likelihood="bernoulli",
        latent_dim=40,
        model="ciwae",
        model_options={"beta": 0.5, "k": 64},
        epochs=EPOCHS,
        batch_size=100,
        lr=1e-3,
        device="cpu",
        precision="fp32",
        seed=SEED,
        out=f"{tmp}/c.safetensors",
    )
    ours = vaecli.load(r.path)
ours.eval()
ours_own = ours.evaluate(test_u8, iw_samples=K)["nll"]
ours_common = common_nll(
    lambda x: ours.posterior(x.reshape(-1, 1, 28, 28)),
    lambda z: ours.likelihood_params(z).reshape(z.shape[0], 784),
    test,
)
print(json.dumps({"ours_own": ours_own, "ours_common": ours_common}), flush=True)

# pythae
from pythae import models
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig

torch.manual_seed(SEED)


class Encoder(BaseEncoder):
    def __init__(self):
        BaseEncoder.__init__(self)
        self.layers = nn.Sequential(nn.Linear(784, 512), nn.ReLU())
        self.embedding = nn.Linear(512, 40)
        self.log_var = nn.Linear(512, 40)

    def forward(self, x):
        h = self.layers(x.reshape(-1, 784))
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self):
        BaseDecoder.__init__(self)
        self.layers = nn.Sequential(nn.Linear(40, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())

    def forward(self, z):
        return ModelOutput(reconstruction=self.layers(z).reshape(-1, 1, 28, 28))


cfg = models.CIWAEConfig(input_dim=(1, 28, 28), latent_dim=40, reconstruction_loss="bce", beta=0.5, number_samples=64)
m = models.CIWAE(cfg, encoder=Encoder(), decoder=Decoder())
with tempfile.TemporaryDirectory() as tmp:
    tc = BaseTrainerConfig(
        output_dir=tmp,
        num_epochs=EPOCHS,
        per_device_train_batch_size=100,
        per_device_eval_batch_size=100,
        steps_saving=None,
        no_cuda=True,
        learning_rate=1e-3,
    )
    TrainingPipeline(model=m, training_config=tc)(train_data=(train_u8.float() / 255), eval_data=None)
m.eval()
with torch.no_grad():
    their_own = -float(m.get_nll(test, n_samples=K, batch_size=1000))


def p_enc(x):
    o = m.encoder(x)
    return o.embedding, o.log_covariance


def p_logits(z):
    h = m.decoder.layers[:3](z)  # pre-sigmoid
    return h


their_common = common_nll(p_enc, p_logits, test)
print(
    json.dumps(
        {"ours_own": ours_own, "ours_common": ours_common, "pythae_own": their_own, "pythae_common": their_common}
    )
)
