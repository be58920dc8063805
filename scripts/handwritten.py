#!/usr/bin/env python
"""The hand-written GAN loop of a tutorial, as the baseline that scripts/bench.py --vs-handwritten
times gan-train against: torchvision's MNIST through a DataLoader, the paper's maxout networks,
sigmoid outputs with nn.BCELoss, SGD with momentum, a D step then a G step (k = 1), and ``.item()``
of both losses every iteration.

    python scripts/handwritten.py --root ../shared/data --iters 600
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
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/*-ubyte")
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (minibatches moved there each step)")
    args = parser.parse_args()

    from torchvision import datasets, transforms

    start = time.perf_counter()
    torch.manual_seed(0)
    train = datasets.MNIST(args.root, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True)
    device = torch.device(args.device)
    G = nn.Sequential(nn.Linear(100, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(), nn.Linear(1200, 784), nn.Sigmoid())
    D = nn.Sequential(nn.Dropout(0.2), Maxout(784, 240, 5), nn.Dropout(0.5), Maxout(240, 240, 5), nn.Dropout(0.5),
                      nn.Linear(240, 1), nn.Sigmoid())
    G, D = G.to(device), D.to(device)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.1, momentum=0.5)
    opt_D = torch.optim.SGD(D.parameters(), lr=0.1, momentum=0.5)
    bce = nn.BCELoss()
    done, losses = 0, []
    while done < args.iters:
        for x, _ in loader:
            x = x.view(len(x), -1).to(device)
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
