#!/usr/bin/env python
"""The hand-written GAN loop of a tutorial, as the baseline that scripts/bench.py --vs-handwritten
times gan-train against: the data through torchvision and a DataLoader, sigmoid outputs with
nn.BCELoss, SGD with momentum, a D step then a G step (k = 1), and ``.item()`` of both losses every
iteration. Two network pairs, the same as gan-train's:

- ``--arch maxout``: the paper's MNIST networks on torchvision's MNIST (``--root`` holds MNIST/raw);
- ``--arch dcgan``: gan-train's arch=dcgan (width 64) on a folder of 32x32 RGB images read by
  torchvision's ImageFolder, as the PyTorch DCGAN tutorial reads its data (``--root`` is the folder;
  scripts/export_images.py --dataset noise writes a CIFAR-shaped one).

    python scripts/handwritten.py --root ../shared/data --iters 600
    python scripts/handwritten.py --arch dcgan --root /tmp/cifar_shaped --iters 200
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


class Maxout(nn.Module):
    def __init__(self, n_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(n_in, units * pieces)

    def forward(self, x):
        return self.linear(x).view(-1, self.units, self.pieces).max(dim=2).values  # as gan_cli's Maxout


def maxout_nets():
    G = nn.Sequential(nn.Linear(100, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
                      nn.Linear(1200, 784), nn.Sigmoid())
    D = nn.Sequential(nn.Dropout(0.2), Maxout(784, 240, 5), nn.Dropout(0.5), Maxout(240, 240, 5), nn.Dropout(0.5),
                      nn.Linear(240, 1), nn.Sigmoid())
    return G, D


def dcgan_nets(width: int = 64, side: int = 32, channels: int = 3):
    s = side // 4
    G = nn.Sequential(
        nn.Linear(100, 2 * width * s * s), nn.Unflatten(1, (2 * width, s, s)), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Sigmoid())
    D = nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(0.5),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(2 * width * s * s, 1), nn.Sigmoid())
    for net in (G, D):  # DCGAN's N(0, 0.02) init
        for layer in net.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(layer.weight, 0.0, 0.02)
                nn.init.zeros_(layer.bias)
    return G, D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("maxout", "dcgan"), default="maxout")
    parser.add_argument("--root", required=True,
                        help="maxout: folder holding MNIST/raw/*-ubyte; dcgan: an image folder")
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (minibatches moved there each step)")
    args = parser.parse_args()

    from torchvision import datasets, transforms

    start = time.perf_counter()
    torch.manual_seed(0)
    if args.arch == "maxout":
        train = datasets.MNIST(args.root, train=True, download=False, transform=transforms.ToTensor())
        G, D = maxout_nets()
    else:
        train = datasets.ImageFolder(args.root, transform=transforms.Compose(
            [transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()]))
        G, D = dcgan_nets()
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    if len(loader) == 0:
        raise SystemExit(f"handwritten: {args.root} holds {len(train)} images, "
                         f"fewer than --batch-size {args.batch_size}")
    device = torch.device(args.device)
    G, D = G.to(device), D.to(device)
    opt_G = torch.optim.SGD(G.parameters(), lr=args.lr, momentum=0.5)
    opt_D = torch.optim.SGD(D.parameters(), lr=args.lr, momentum=0.5)
    bce = nn.BCELoss()
    done, losses = 0, []
    while done < args.iters:
        for x, _ in loader:
            x = (x.view(len(x), -1) if args.arch == "maxout" else x).to(device)
            ones, zeros = torch.ones(len(x), 1, device=device), torch.zeros(len(x), 1, device=device)
            z = torch.rand(len(x), 100, device=device) * 2 * 3 ** 0.5 - 3 ** 0.5
            fake = G(z)
            loss_d = bce(D(x), ones) + bce(D(fake.detach()), zeros)
            opt_D.zero_grad()
            loss_d.backward()
            opt_D.step()
            loss_g = bce(D(fake), ones)
            opt_G.zero_grad()
            loss_g.backward()
            opt_G.step()
            losses.append((loss_d.item(), loss_g.item()))
            done += 1
            if done == args.iters:
                break
    print(f"handwritten: {done} iterations, {time.perf_counter() - start:.2f} s, last losses {losses[-1]}")


if __name__ == "__main__":
    main()
