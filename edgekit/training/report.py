"""The training report's picture: the curves of every epoch and the confusion matrix of the best one."""
from __future__ import annotations

import io

from edgekit.core.intervals import percent


def plot_png(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hist = report["history"]
    names = report["classes"]
    conf = np.asarray(report["confusion"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    for phase, style in (("head", "--"), ("finetune", "-")):
        rows = [e for e in hist if e["phase"] == phase]
        if not rows:
            continue
        x = [e["epoch"] for e in rows]
        ax1.plot(x, [100 * e["val_accuracy"] for e in rows], style, color="tab:blue", label=f"{phase}: val accuracy")
        ax1.plot(x, [100 * e["train_accuracy"] for e in rows], style, color="tab:green",
                 label=f"{phase}: train accuracy")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("accuracy (%)")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title(f"{report['name']} ({report['variant']}, {report['mode']}): best epoch {report['best_epoch']}, "
                  f"val {percent(report['val_accuracy'], report.get('val_accuracy_ci95'))}", fontsize=10)
    ax2.imshow(conf, cmap="Blues")
    ax2.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax2.set_yticks(range(len(names)), names, fontsize=7)
    ax2.set_xlabel("predicted")
    ax2.set_ylabel("true")
    ax2.set_title(f"confusion on {report['val_images']} validation images", fontsize=10)
    if len(names) <= 30:
        for i in range(len(names)):
            for j in range(len(names)):
                if conf[i, j]:
                    ax2.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                             color="white" if conf[i, j] > conf.max() / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
