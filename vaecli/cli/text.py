"""How the commands write settings, options, objectives and optimizers in one line."""

from __future__ import annotations

from typing import Any, Optional


def fmt_options(opts: dict) -> str:
    if not opts:
        return ""
    return ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items())


def fmt_provider(p: Optional[dict]) -> str:
    if not p:
        return ""
    return f"{p.get('distribution', '?')} {p.get('version', '')}".strip()


def fmt_objective(t: dict) -> str:
    """``ELBO``, a beta-VAE, or the IWAE bound, with warm-up and free bits."""
    k, beta = t.get("iw_samples", 1), t.get("beta", 1.0)
    if k > 1:
        parts = [f"IWAE bound, k={k} (Burda et al. 2015)"]
    else:
        parts = ["ELBO" if beta == 1 else f"beta-VAE, beta {beta:g}"]
    if t.get("kl_warmup"):
        parts.append(f"KL warm-up over {t['kl_warmup']:g} epoch{'s' if t['kl_warmup'] != 1 else ''}")
    if t.get("free_bits"):
        parts.append(f"free bits {t['free_bits']:g} nats per dimension")
    return ", ".join(parts)


def fmt_optimizer(t: dict) -> str:
    name = t.get("optimizer", "adam")
    decay = t.get("weight_decay")
    decay = (0.01 if name == "adamw" else 0.0) if decay is None else decay
    parts = [f"{name} lr {t.get('lr')}"]
    if decay:
        parts.append(f"weight decay {decay:g}")
    schedule = t.get("lr_schedule", "constant")
    if schedule == "step":
        every = "every epoch" if t.get("lr_step") == 1 else f"every {t.get('lr_step')} epochs"
        parts.append(f"step schedule (x{t.get('lr_gamma'):g} {every})")
    elif schedule == "multistep":
        at = ", ".join(map(str, t.get("lr_milestones") or []))
        parts.append(f"multistep schedule (x{t.get('lr_gamma'):g} after epochs {at})")
    elif schedule == "burda":
        parts.append("burda schedule (3^i epochs at lr x 10^(-i/7), Burda et al. 2015)")
    elif schedule != "constant":
        parts.append(f"{schedule} schedule")
    if t.get("grad_clip"):
        parts.append(f"gradient norm clipped at {t['grad_clip']:g}")
    return ", ".join(parts)


def fmt_setting(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={fmt_setting(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(fmt_setting, value))
    return str(value)


def number_table(title: str) -> Any:
    """The borderless table of the scores commands: name (bold), value (right), note (dim)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    return table


def fmt_resumes(training: dict) -> str:
    """``resumed after epoch 2 with precision fp32 (was bf16)``; empty when no resume changed
    the arithmetic (``vaecli.training.resumed``)."""
    parts = []
    for r in training.get("resumes") or []:
        if not isinstance(r, dict):
            continue
        what = ", ".join(f"{k} {v[1]} (was {v[0]})" for k, v in r.items() if isinstance(v, list) and len(v) == 2)
        if what:
            parts.append(f"resumed after epoch {r.get('after_epoch', '?')} with {what}")
    return "; ".join(parts)
