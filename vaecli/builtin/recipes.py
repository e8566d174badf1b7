"""Built-in recipes: models from the literature as named option sets (``vae train --recipe NAME``).

Each recipe says where its settings come from and how they differ from the source;
``benchmarks/quality.py`` trains them and compares the test NLL with the published figure.
"""

from __future__ import annotations

from ..hookspecs import RecipeSpec, hookimpl

# The network of Burda et al. 2015 for one stochastic layer: two deterministic layers of 200
# tanh units each way, 50 latent units; dynamically binarized MNIST; batches of 20; Adam with
# their schedule of 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7 (3280 epochs).
_BURDA = {
    "dataset": "mnist",
    "arch": "mlp",
    "arch_options": {"hidden": [200, 200], "activation": "tanh"},
    "likelihood": "bernoulli",
    "binarize": "dynamic",
    "latent_dim": 50,
    "batch_size": 20,
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_schedule": "burda",
    "epochs": 3280,
}
_BURDA_SOURCE = (
    "Burda, Grosse & Salakhutdinov 2015, Importance Weighted Autoencoders, Table 1 (MNIST, one "
    "stochastic layer) and section 5: 784-200-200-50 tanh, dynamic binarization, batch 20, Adam with "
    "3^i epochs at 1e-3*10^(-i/7), i=0..7, NLL with k=5000. Differs in Adam's eps (theirs 1e-4, here "
    "PyTorch's 1e-8: vaecli has no option for it) and the initialisation (theirs Glorot & Bengio's, "
    "here PyTorch's)"
)

RECIPES = (
    RecipeSpec(
        name="pytorch-example",
        help="The PyTorch example VAE: 784-400-20 ReLU, Bernoulli on grey levels, Adam 1e-3, batch 128, 10 epochs.",
        source=(
            "PyTorch examples, vae/main.py (github.com/pytorch/examples): the same network, objective "
            "(binary cross-entropy on grey levels + KL), optimiser, batch size and epochs. It publishes "
            "no figure; run side by side it reaches a test -ELBO of 105.6 after 10 epochs "
            "(benchmarks/RESULTS.md)"
        ),
        settings={
            "dataset": "mnist",
            "arch": "mlp",
            "arch_options": {"hidden": [400], "activation": "relu"},
            "likelihood": "bernoulli",
            "binarize": "none",
            "latent_dim": 20,
            "batch_size": 128,
            "optimizer": "adam",
            "lr": 1e-3,
            "lr_schedule": "constant",
            "epochs": 10,
        },
    ),
    RecipeSpec(
        name="kingma-welling",
        help="Kingma & Welling's MNIST VAE: one tanh layer of 500, latent 20, Bernoulli, batch 100 (Adam, not Adagrad).",
        source=(
            "Kingma & Welling 2013, Auto-Encoding Variational Bayes, section 5: one hidden layer of "
            "500 tanh units each way, Bernoulli decoder, minibatches of 100, one sample per example. "
            "Differs: Adam 1e-3 instead of Adagrad (step size 0.01-0.1) with a weight-decay prior "
            "(vaecli trains with adam or adamw only), and 100 epochs where their figure 2 runs to "
            "1e8 examples (about 1,700 epochs). They plot the bound and publish no test NLL"
        ),
        settings={
            "dataset": "mnist",
            "arch": "mlp",
            "arch_options": {"hidden": [500], "activation": "tanh"},
            "likelihood": "bernoulli",
            "binarize": "none",
            "latent_dim": 20,
            "batch_size": 100,
            "optimizer": "adam",
            "lr": 1e-3,
            "lr_schedule": "constant",
            "epochs": 100,
        },
    ),
    RecipeSpec(
        name="pythae-vae",
        help="pythae's reproduced VAE: 784-400-40 ReLU, Bernoulli, binarized MNIST, batch 100, lr 1e-4, 500 epochs.",
        source=(
            "pythae (Chadebec et al. 2022), examples/scripts/reproducibility/vae.py: 784-400-40 ReLU, "
            "Bernoulli, Adam 1e-4, batch 100, 500 epochs, the rate times 10^(-1/5) after epochs 200 "
            "and 350; 89.78 nats with 200 importance samples (their reference: 89.9, Rezende & "
            "Mohamed 2015). Differs: pythae trains on Larochelle's fixed binarization of 50,000 MNIST "
            "images; here one fixed draw of all 60,000 (--binarize static)"
        ),
        settings={
            "dataset": "mnist",
            "arch": "mlp",
            "arch_options": {"hidden": [400], "activation": "relu"},
            "likelihood": "bernoulli",
            "binarize": "static",
            "latent_dim": 40,
            "batch_size": 100,
            "optimizer": "adam",
            "lr": 1e-4,
            "lr_schedule": "multistep",
            "lr_milestones": [200, 350],
            "lr_gamma": 10 ** (-1 / 5),
            "epochs": 500,
        },
        published={"nll": 89.78, "iw_samples": 200, "epochs": 500},
    ),
    RecipeSpec(
        name="burda-vae",
        help="Burda et al.'s VAE (k=1): 784-200-200-50 tanh, dynamic binarization, batch 20, 3^i schedule, 3280 epochs.",
        source=_BURDA_SOURCE,
        settings={**_BURDA, "iw_samples": 1},
        published={"nll": 86.76, "iw_samples": 5000, "epochs": 3280},
    ),
    RecipeSpec(
        name="burda-iwae",
        help="Burda et al.'s IWAE, k=50: 784-200-200-50 tanh, dynamic binarization, batch 20, 3^i schedule, 3280 epochs.",
        source=_BURDA_SOURCE,
        settings={**_BURDA, "iw_samples": 50},
        published={"nll": 84.78, "iw_samples": 5000, "epochs": 3280},
    ),
    *(
        RecipeSpec(
            name=f"rainforth-{family}",
            help=f"Rainforth et al.'s {family.upper()} ({label}) on Burda et al.'s network and schedule, 3280 epochs.",
            source=(
                "Rainforth et al. 2018, Tighter Variational Bounds are Not Necessarily Better, section 6 "
                f"(MNIST, {family.upper()}, {label}), as pythae's reproducibility table reports it: Burda et "
                "al.'s 784-200-200-50 tanh network, dynamic binarization, batch 20 and 3^i schedule, NLL with "
                "k=5000. Differs as burda-iwae does: Adam's eps and the initialisation"
            ),
            settings={**_BURDA, "model": family, "model_options": options},
            published={"nll": nll, "iw_samples": 5000, "epochs": 3280},
        )
        for family, label, options, nll in (
            ("miwae", "M=8, K=8", {"m": 8, "k": 8}, 84.97),
            ("piwae", "M=8, K=8", {"m": 8, "k": 8}, 84.46),
            ("ciwae", "beta=0.05, K=64", {"beta": 0.05, "k": 64}, 84.57),
        )
    ),
    RecipeSpec(
        name="tomczak-vamp",
        help="Tomczak & Welling's VampPrior, K=500: 784-300-300-40, KL warm-up 100 epochs, lr 5e-4, batch 100, 2000 epochs.",
        source=(
            "Tomczak & Welling 2018, VAE with a VampPrior, section 4 and pythae's reproduction "
            "(examples/scripts/reproducibility/vamp.py): 500 pseudo-inputs, latent 40, two hidden layers "
            "of 300, a linear KL warm-up over 100 epochs, Adam 5e-4, batch 100, binarized MNIST; pythae "
            "reports 85.79 nats with k=5000 (the paper 85.57). Differs: ReLU layers where theirs are gated "
            "(GatedDense), their log-variance clipped to [-6, 2] is not, a fixed 2000 epochs where they stop "
            "early, and one fixed draw of all 60,000 MNIST images where they use Larochelle's"
        ),
        settings={
            "dataset": "mnist",
            "arch": "mlp",
            "arch_options": {"hidden": [300, 300], "activation": "relu"},
            "likelihood": "bernoulli",
            "binarize": "static",
            "model": "vamp",
            "model_options": {"components": 500},
            "latent_dim": 40,
            "kl_warmup": 100,
            "batch_size": 100,
            "optimizer": "adam",
            "lr": 5e-4,
            "epochs": 2000,
        },
        published={"nll": 85.79, "iw_samples": 5000, "epochs": 2000},
    ),
)


RECIPES = (
    *RECIPES,
    RecipeSpec(
        name="tabular",
        help="Synthetic tables (vae train table:FILE --recipe tabular): TVAE's network and batch, 128-128, latent 32, beta 1/2, Adam 3e-3, 300 epochs.",
        source=(
            "Xu et al. 2019, Modeling Tabular Data using Conditional GAN (TVAE), as ctgan 0.12.1 builds it: "
            "two hidden layers of 128 each way (its latent is 128, here 32), batch 500, 300 epochs, and its "
            "loss_factor 2 (the reconstruction weighed twice) as beta = 1/2. Differs in the learning rate "
            "(3e-3, theirs 1e-3: more learned per step on small tables), the likelihood of each column "
            "(vaecli's table likelihood, not its mode-specific normalisation) and weight decay (none, "
            "theirs 1e-5). Side by side: benchmarks/tables_side_by_side.py"
        ),
        settings={
            "arch": "mlp",
            "arch_options": {"hidden": [128, 128], "activation": "relu"},
            "latent_dim": 32,
            "beta": 0.5,
            "batch_size": 500,
            "optimizer": "adam",
            "lr": 3e-3,
            "lr_schedule": "constant",
            "epochs": 300,
        },
    ),
)


@hookimpl
def register_recipes(register):
    for spec in RECIPES:
        register(spec)
