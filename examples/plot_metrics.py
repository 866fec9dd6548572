#!/usr/bin/env python3
"""Plot the training curves of a libnn metrics log.

The log is the CSV nn_metrics_log_write produces, one row per epoch:
    epoch,train_loss,val_loss,val_acc,lr,seconds

Usage:
    python3 examples/plot_metrics.py metrics.csv            # window, or ASCII
    python3 examples/plot_metrics.py metrics.csv -o out.png # save a PNG
    python3 examples/plot_metrics.py metrics.csv --ascii    # force ASCII

Any python3 works: matplotlib is used only when it can be imported;
otherwise (or with --ascii) the curves are drawn as text on stdout.
"""
import argparse
import csv
import math
import sys

COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds"]


def read_log(path):
    """Columns of the log as lists of floats (NaN for empty or 'nan' cells)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError("%s: missing columns %s" % (path, ", ".join(missing)))
        data = {c: [] for c in COLUMNS}
        for row in reader:
            for c in COLUMNS:
                try:
                    data[c].append(float(row[c]))
                except (TypeError, ValueError):
                    data[c].append(float("nan"))
    if not data["epoch"]:
        raise ValueError("%s: no rows" % path)
    return data


def finite(values):
    return [v for v in values if not math.isnan(v) and not math.isinf(v)]


def ascii_chart(title, series, width=60, height=12, out=sys.stdout):
    """Draw named series (lists of y values per epoch) on one text grid."""
    marks = "*o+x#"
    ys = [v for _, vals in series for v in finite(vals)]
    if not ys:
        out.write("%s: no finite values\n" % title)
        return
    lo, hi = min(ys), max(ys)
    if hi == lo:
        hi = lo + 1.0
    n = max(len(vals) for _, vals in series)
    grid = [[" "] * width for _ in range(height)]
    for k, (_, vals) in enumerate(series):
        for i, v in enumerate(vals):
            if math.isnan(v) or math.isinf(v):
                continue
            x = 0 if n == 1 else round(i * (width - 1) / (n - 1))
            y = round((v - lo) * (height - 1) / (hi - lo))
            grid[height - 1 - y][x] = marks[k % len(marks)]
    out.write("%s\n" % title)
    for r, row in enumerate(grid):
        label = hi - r * (hi - lo) / (height - 1)
        out.write("%10.4g |%s\n" % (label, "".join(row)))
    out.write("%10s +%s\n" % ("", "-" * width))
    out.write("%10s  epoch 1 .. %d   " % ("", n))
    out.write("  ".join("%s %s" % (marks[k % len(marks)], name) for k, (name, _) in enumerate(series)))
    out.write("\n\n")


def plot_ascii(d):
    ascii_chart("loss", [("train_loss", d["train_loss"]), ("val_loss", d["val_loss"])])
    ascii_chart("validation accuracy", [("val_acc", d["val_acc"])])
    if finite(d["lr"]):
        ascii_chart("learning rate", [("lr", d["lr"])])


def plot_matplotlib(d, output):
    import matplotlib
    if output:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ep = d["epoch"]
    axes[0].plot(ep, d["train_loss"], label="train")
    axes[0].plot(ep, d["val_loss"], label="val")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(ep, d["val_acc"], color="tab:green")
    axes[1].set_title("validation accuracy")
    axes[2].plot(ep, d["lr"], color="tab:orange")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if output:
        fig.savefig(output, dpi=120)
        print("wrote %s" % output)
    else:
        plt.show()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log", help="metrics CSV written by nn_metrics_log_*")
    ap.add_argument("-o", "--output", help="save the figure here (PNG) instead of showing it")
    ap.add_argument("--ascii", action="store_true", help="draw text charts even with matplotlib")
    args = ap.parse_args(argv)
    try:
        d = read_log(args.log)
    except (OSError, ValueError) as e:
        print("plot_metrics: %s" % e, file=sys.stderr)
        return 1
    if not args.ascii:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            args.ascii = True
    if args.ascii:
        plot_ascii(d)
    else:
        plot_matplotlib(d, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
