#!/usr/bin/env python3
"""Fashion-MNIST CNN in Python through the libnn bindings: the C demo
(examples/fashion_mnist_cnn.c) line for line, written as a PyTorch user would.

    conv 1->32 3x3 pad 1, ReLU, maxpool 2, conv 32->64 3x3 pad 1, ReLU,
    maxpool 2, Linear 3136->128, ReLU, Linear 128->10; Adam 1e-3, batch 64,
    Normalize with the training set's statistics, a 55000/5000 train /
    validation split, per-epoch loss and validation accuracy, the test
    accuracy, then save with metadata, reload and check.

Run from the repository root after building (or with LIBNN_PATH set):
    python3 examples/fashion_mnist_cnn.py --epochs 3
Quick smoke test (also what NN_EXAMPLE_SMOKE=1 selects):
    python3 examples/fashion_mnist_cnn.py --epochs 1 --subset 2000 --test-subset 500
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'bindings', 'python'))

import libnn  # noqa: E402
import libnn.functional as F  # noqa: E402
from libnn import nn, optim  # noqa: E402
from libnn.data import DataLoader, Dataset, Meter, MetricsLog, Progress, accuracy  # noqa: E402

CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot']


def build_model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # [N, 32, 14, 14]
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # [N, 64, 7, 7]
        nn.Flatten(),                                                  # [N, 3136]
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10))


def load_split(root, prefix):
    """FashionMNIST(root, train): the IDX .gz pair."""
    images = os.path.join(root, prefix + '-images-idx3-ubyte.gz')
    labels = os.path.join(root, prefix + '-labels-idx1-ubyte.gz')
    if not (os.access(images, os.R_OK) and os.access(labels, os.R_OK)):
        raise SystemExit('fashion_mnist_cnn.py: Fashion-MNIST not found in %s (%s-*-ubyte.gz).\n'
                         '  Install it with: apt-get install dataset-fashion-mnist\n'
                         '  or point --data DIR (or NN_FASHION_MNIST) at the four IDX files.'
                         % (root, prefix))
    return Dataset.from_idx(images, labels)


def evaluate(model, loader):
    """(mean loss, accuracy): model.eval(); with torch.no_grad(): ...
    `model` may also be a loaded libnn Model (its predict is the inference path)."""
    is_module = isinstance(model, nn.Module)
    if is_module:
        model.eval()
    loss_m, acc_m = Meter(), Meter()
    with libnn.no_grad():
        for x, y in loader:
            logits = model(x)
            n = y.shape[0]
            loss_m.add(F.cross_entropy(logits, y).item(), n)
            acc_m.add(accuracy(logits, y), n)
    if is_module:
        model.train()
    return loss_m.mean, acc_m.mean


def parse_args(argv):
    smoke = os.environ.get('NN_EXAMPLE_SMOKE', '0') not in ('', '0')
    ap = argparse.ArgumentParser(description='Fashion-MNIST CNN through the libnn bindings')
    ap.add_argument('--data', default=os.environ.get('NN_FASHION_MNIST',
                                                     '/usr/share/datasets/fashion-mnist'))
    ap.add_argument('--epochs', type=int, default=1 if smoke else 3)
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--subset', type=int, default=2000 if smoke else 0,
                    help='train on the first N images only (0: all 60000)')
    ap.add_argument('--test-subset', type=int, default=500 if smoke else 0,
                    help='test on the first N images only (0: all 10000)')
    ap.add_argument('--save', default='fashion_mnist_cnn_py.nnm')
    ap.add_argument('--no-save', dest='save', action='store_const', const='')
    ap.add_argument('--metrics', default='', help='write a per-epoch CSV log here')
    ap.add_argument('--min-accuracy', type=float, default=0.0,
                    help='exit 1 if the test accuracy (%%) is below this')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    libnn.set_num_threads(args.threads)
    libnn.manual_seed(args.seed)                 # torch.manual_seed: reproducible weights

    # ToTensor() + Normalize(mean, std) with the training set's statistics,
    # and the 55000/5000 train/validation split (random_split).
    train_full, test = load_split(args.data, 'train'), load_split(args.data, 't10k')
    if 0 < args.subset < len(train_full):
        train_full = train_full.subset(range(args.subset))
    if 0 < args.test_subset < len(test):
        test = test.subset(range(args.test_subset))
    mean, std = train_full.compute_normalize()
    test.set_normalize(mean, std)
    print('normalization: mean %.4f, std %.4f' % (mean[0], std[0]))
    train, val = train_full.split([55 / 60, 5 / 60], seed=args.seed)

    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    val_loader = DataLoader(val, batch_size=256)     # eval batches can be larger
    test_loader = DataLoader(test, batch_size=256)

    model = build_model()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    print('libnn %s, %d threads: train %d, val %d, test %d images, %d parameters'
          % (libnn.version(), libnn.get_num_threads(), len(train), len(val), len(test),
             model.num_parameters()), flush=True)

    start = time.time()
    progress = Progress(args.epochs, len(train_loader), fd=2)
    log = MetricsLog(args.metrics) if args.metrics else None
    for epoch in range(args.epochs):
        t0 = time.time()
        progress.begin_epoch(epoch)
        loss_m = Meter()
        for i, (x, y) in enumerate(train_loader):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss_m.add(loss.item(), y.shape[0])
            progress.update(i, loss.item(), y.shape[0])
        val_loss, val_acc = evaluate(model, val_loader)
        secs = time.time() - t0
        progress.end_epoch('val accuracy %.2f%%' % (100 * val_acc))
        print('epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.2f%% (%.1f s)'
              % (epoch + 1, args.epochs, loss_m.mean, val_loss, 100 * val_acc, secs),
              flush=True)
        if log:
            log.write(epoch, loss_m.mean, val_loss, val_acc, args.lr, secs)
    if log:
        log.close()

    _, test_acc = evaluate(model, test_loader)
    print('training + evaluation time: %.1f s' % (time.time() - start))
    print('test accuracy: %.1f%%' % (100 * test_acc), flush=True)

    if args.save:
        # Metadata an embedding application needs (read by examples/embed_inference.c).
        libnn.save(model, args.save, meta={
            'description': 'Fashion-MNIST CNN (examples/fashion_mnist_cnn.py)',
            'normalize_mean': [mean[0]], 'normalize_std': [std[0]],
            'input_shape': [1, 1, 28, 28], 'class_names': CLASS_NAMES,
            'test_accuracy': test_acc})
        with libnn.load(args.save) as reloaded:
            _, acc = evaluate(reloaded, test_loader)
        print('saved %s; reloaded model test accuracy: %.1f%%' % (args.save, 100 * acc))
        if acc != test_acc:
            print('fashion_mnist_cnn.py: reloaded model disagrees (%.4f vs %.4f)'
                  % (acc, test_acc), file=sys.stderr)
            return 1
    if 100 * test_acc < args.min_accuracy:
        print('fashion_mnist_cnn.py: test accuracy %.1f%% below --min-accuracy %.1f%%'
              % (100 * test_acc, args.min_accuracy), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except libnn.LibnnError as e:
        print('fashion_mnist_cnn.py: %s' % e, file=sys.stderr)
        sys.exit(1)
