"""The toy demonstration's problem: two 1-D Gaussians, their exact posterior, and the random streams.

As in generate_toy_demo.py: class 0 is N(-1, 2^2), class 1 is N(1, 1^2); each
draw takes 50,000 points of class 0 and 10,000 of class 1, and those counts are
also the class priors of the ground-truth posterior P*(y|x) (Bayes' rule on the
log-densities plus the log counts, the script's ``Softmax(X)``).

Random streams, as in the official script run on a GPU: one CPU generator,
seeded with the seed, initialises the model and then draws every sample
(the C draws, one batch per iteration, the final test points); the attacks'
uniform starts come from a second generator seeded with the same seed (the
script's CUDA generator; here a CPU one). Every objective therefore sees the
same initial model and the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MEANS = (-1.0, 1.0)
STDS = (2.0, 1.0)
COUNTS = (50_000, 10_000)
TEST_POINTS = 10_000
TEST_RANGE = (-10.0, 10.0)


@dataclass(frozen=True)
class Problem:
    """The two Gaussians and how many points of each one draw takes (also the priors)."""

    counts: tuple[int, int] = COUNTS

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        """P*(y|x) for x of shape (N, 1): shape (N, 2), the official ``Softmax(X)``."""
        logits = [-(x - m) ** 2 / (2 * s ** 2) - math.log(s) + math.log(n)
                  for m, s, n in zip(MEANS, STDS, self.counts)]
        return F.softmax(torch.cat(logits, dim=1), dim=1)

    def sample(self, rng: torch.Generator) -> torch.Tensor:
        """One draw: ``counts[0]`` points of class 0 then ``counts[1]`` of class 1, shape (N, 1)."""
        parts = []
        for m, s, n in zip(MEANS, STDS, self.counts):  # torch.distributions.Normal(m, s).sample((n, 1))
            shape = (n, 1)
            parts.append(torch.normal(torch.tensor(m).expand(shape), torch.tensor(s).expand(shape), generator=rng))
        return torch.cat(parts, dim=0)

    @staticmethod
    def test_points(rng: torch.Generator) -> torch.Tensor:
        """The final evaluation's points: 10,000 uniform in [-10, 10] (Uniform(-10, 10).sample), shape (N, 1)."""
        low, high = TEST_RANGE
        return torch.tensor(low) + torch.rand((TEST_POINTS, 1), generator=rng) * torch.tensor(high - low)


def seeded(seed: int, build) -> tuple[object, torch.Generator, torch.Generator]:
    """``build()`` under ``torch.manual_seed(seed)``, the sample generator continuing that stream, the attack generator.

    The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = build()
        samples = torch.Generator()
        samples.set_state(torch.get_rng_state())
    return built, samples, torch.Generator().manual_seed(seed)
