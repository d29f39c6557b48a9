"""Parity of `score-train toy` with the official generate_toy_demo.py (github.com/P2333/SCORE).

Each reference below is the official routine transcribed from the script, with
``.cuda()`` dropped, the sample counts passed in (the script's ``half_bs_0`` /
``half_bs_1``, far fewer here) and the uniform draws of the attacks taken from
an explicit generator (the script's CUDA generator); samples and the model's
initialisation come from the global generator, as in the script. Ours must give
the same perturbations (bit for bit), losses, gradients and measurements from
the same noise, also when the attack's chunks are smaller than the batch.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.toy import attacks as toy_attacks
from training.toy import objectives
from training.toy import run as toy
from training.toy.distances import TOY_DISTANCES, toy_distance
from training.toy.problem import Problem
from training.toy.settings import OBJECTIVES, ToySettings

half_bs_0 = 500  # prior for class 0 (the script: 50000)
half_bs_1 = 100  # prior for class 1 (the script: 10000)
epsilon = 1
attack_iters = 10
alpha = epsilon / attack_iters
G_Mean_0, G_Mean_1, G_std_0, G_std_1 = -1, 1, 2, 1
TRADES_lambda = 1.0


# ----------------------------------------------------------------- official semantics, transcribed

criterion_kl = nn.KLDivLoss(reduction="batchmean")


def distance_func(output, target, divergence):
    M = (output + target) / 2
    if divergence == "JSsqrt":
        return (0.5 * (criterion_kl(M.log(), output) + criterion_kl(M.log(), target))).sum(dim=-1).sqrt().mean(dim=0)
    elif divergence == "LSE":
        return ((output - target) ** 2).sum(dim=-1).mean(dim=0)
    elif divergence == "L2":
        return (torch.norm(output - target, p=2, dim=-1)).mean(dim=0)
    elif divergence == "L1":
        return (torch.norm(output - target, p=1, dim=-1)).mean(dim=0)
    elif divergence == "Linf":
        return (torch.norm(output - target, p=float("inf"), dim=-1)).mean(dim=0)
    elif divergence == "KL":
        return criterion_kl(output.log(), target)


def Softmax(X):
    logit_0 = - (X - G_Mean_0) ** 2 / (2 * G_std_0 ** 2) - math.log(G_std_0) + math.log(half_bs_0)
    logit_1 = - (X - G_Mean_1) ** 2 / (2 * G_std_1 ** 2) - math.log(G_std_1) + math.log(half_bs_1)
    logit_all = torch.cat((logit_0, logit_1), dim=1)
    return F.softmax(logit_all, dim=1)


def compute_C(X, divergence, g):
    delta = torch.zeros_like(X)
    delta.uniform_(-epsilon, epsilon, generator=g)
    delta.requires_grad = True
    for _ in range(attack_iters):
        loss = distance_func(Softmax(X + delta), Softmax(X), divergence)
        loss.backward()
        grad = delta.grad.detach()
        delta.data = torch.clamp(delta + alpha * torch.sign(grad), min=-epsilon, max=epsilon)
        delta.grad.zero_()
    return delta.detach()


def attack_pgd(model, X, y, divergence, g):
    delta = torch.zeros_like(X)
    delta.uniform_(-epsilon, epsilon, generator=g)
    delta.requires_grad = True
    for _ in range(attack_iters):
        output = F.softmax(model(X + delta), dim=1)
        loss = distance_func(output, y, divergence)
        loss.backward()
        grad = delta.grad.detach()
        delta.data = torch.clamp(delta + alpha * torch.sign(grad), min=-epsilon, max=epsilon)
        delta.grad.zero_()
    return delta.detach()


def attack_pgd_consistent(model, X, divergence, g):
    delta = torch.zeros_like(X)
    delta.uniform_(-epsilon, epsilon, generator=g)
    delta.requires_grad = True
    for _ in range(attack_iters):
        output = F.softmax(model(X + delta), dim=1)
        loss = distance_func(output, Softmax(X + delta), divergence)
        loss.backward()
        grad = delta.grad.detach()
        delta.data = torch.clamp(delta + alpha * torch.sign(grad), min=-epsilon, max=epsilon)
        delta.grad.zero_()
    return delta.detach()


def attack_trades(model, X, y, divergence, g):
    delta = torch.zeros_like(X)
    delta.uniform_(-epsilon, epsilon, generator=g)
    delta.requires_grad = True
    clean_output = model(X)
    clean_output = F.softmax(clean_output.detach(), dim=1)
    for _ in range(attack_iters):
        output = F.softmax(model(X + delta), dim=1)
        loss = distance_func(output, clean_output, divergence)
        loss.backward()
        grad = delta.grad.detach()
        delta.data = torch.clamp(delta + alpha * torch.sign(grad), min=-epsilon, max=epsilon)
        delta.grad.zero_()
    return delta.detach()


class Small_NN(nn.Module):
    def __init__(self, num_features=100):
        super(Small_NN, self).__init__()
        self.model = nn.Sequential(
            nn.Linear(1, num_features),
            nn.Tanh(),
            nn.Linear(num_features, num_features),
            nn.Tanh(),
            nn.Linear(num_features, 2),
        )

    def forward(self, x):
        return self.model(x)


def demo_loss(demo, model, Sample_all, divergence, g):
    """The body of the script's training loop up to ``robust_loss`` (the perturbation too; None for Standard)."""
    delta = None
    if demo == "PGDAT":
        y_all = Softmax(Sample_all)
        delta = attack_pgd(model, Sample_all, y_all, divergence, g)
        output = F.softmax(model(Sample_all + delta), dim=1)
        robust_loss = distance_func(output, y_all, divergence)
    elif demo == "PGDATconsistent":
        delta = attack_pgd_consistent(model, Sample_all, divergence, g)
        output = F.softmax(model(Sample_all + delta), dim=1)
        y_all = Softmax(Sample_all + delta)
        robust_loss = distance_func(output, y_all, divergence)
    elif demo == "TRADES":
        y_all = Softmax(Sample_all)
        delta = attack_trades(model, Sample_all, y_all, divergence, g)
        clean_output = F.softmax(model(Sample_all), dim=1)
        output = F.softmax(model(Sample_all + delta), dim=1)
        robust_loss = distance_func(clean_output, y_all, divergence)
        robust_loss += TRADES_lambda * distance_func(output, y_all, divergence)
    elif demo == "Standard":
        y_all = Softmax(Sample_all)
        output = F.softmax(model(Sample_all), dim=1)
        robust_loss = distance_func(output, y_all, divergence)
    return robust_loss, delta


def sample_all(P_0, P_1):
    Sample_0 = P_0.sample(sample_shape=torch.Size([half_bs_0, 1]))
    Sample_1 = P_1.sample(sample_shape=torch.Size([half_bs_1, 1]))
    return torch.cat((Sample_0, Sample_1), dim=0)


def official_iteration(demo, model, opt, Sample_all, divergence, divergence_C, g):
    """One pass of the script's training loop: the step, then its three records."""
    opt.zero_grad()
    robust_loss, _ = demo_loss(demo, model, Sample_all, divergence, g)
    opt.zero_grad()
    robust_loss.backward()
    opt.step()
    opt.zero_grad()
    delta = attack_pgd_consistent(model, Sample_all, divergence_C, g)
    R_SCORE = distance_func(F.softmax(model(Sample_all + delta), dim=1), Softmax(Sample_all + delta), divergence_C)
    standard_loss = distance_func(F.softmax(model(Sample_all), dim=1), Softmax(Sample_all), divergence_C)
    return robust_loss.item(), R_SCORE.item(), standard_loss.item()


def official_main(demo, divergence, divergence_C, iterations, seed, g):
    """The script's main(): C, then the training loop with its records, then the final test predictions."""
    torch.manual_seed(seed)
    P_0 = torch.distributions.normal.Normal(G_Mean_0, G_std_0)
    P_1 = torch.distributions.normal.Normal(G_Mean_1, G_std_1)
    model = Small_NN(num_features=100)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0)
    C_L = 0
    for _ in range(10):
        Sample_all = sample_all(P_0, P_1)
        delta = compute_C(Sample_all, divergence, g)
        C_L += distance_func(Softmax(Sample_all + delta), Softmax(Sample_all), divergence)
    C_L /= 10
    records = {"train_loss": [], "R_SCORE": [], "R_standard": []}
    for _ in range(iterations):
        values = official_iteration(demo, model, opt, sample_all(P_0, P_1), divergence, divergence_C, g)
        for key, value in zip(records, values):
            records[key] += [value]
    model.eval()
    U = torch.distributions.uniform.Uniform(-10, 10)
    x_test = U.sample(sample_shape=torch.Size([10000, 1]))
    y_test = Softmax(x_test)
    pre_test = F.softmax(model(x_test).detach(), dim=1)
    return C_L.item(), records, x_test, y_test, pre_test


# ----------------------------------------------------------------- the comparison

HALF_BS = (half_bs_0, half_bs_1)
SETTINGS = ToySettings(counts=HALF_BS)


@pytest.fixture(autouse=True)
def _one_thread_small_chunks(monkeypatch):
    """One thread (as the workers run) and attack chunks smaller than the batch, so chunking is exercised."""
    monkeypatch.setattr(toy_attacks, "CHUNK", 128)
    with toy.one_thread():
        yield


@pytest.fixture(scope="module")
def batch():
    """A model that has trained a little (so attacks settle at interior points, not only at the boundary) and a draw."""
    torch.manual_seed(0)
    model = Small_NN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        x = torch.randn(600, 1) * 2
        loss = distance_func(F.softmax(model(x), dim=1), Softmax(x), "KL")
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = Problem(HALF_BS).sample(torch.Generator().manual_seed(3))
    return model, x


def _ours(model):
    mlp = objectives.ToyMLP()
    mlp.load_state_dict(model.state_dict())  # same parameter names as Small_NN
    return mlp


@pytest.mark.parametrize("divergence", TOY_DISTANCES)
def test_distances_and_their_gradients_match_distance_func(divergence):
    g = torch.Generator().manual_seed(1)
    p = F.softmax(torch.randn(300, 2, generator=g), dim=1).requires_grad_()
    q = F.softmax(torch.randn(300, 2, generator=g), dim=1)
    ours, ref = toy_distance(divergence, p, q), distance_func(p, q, divergence)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(torch.autograd.grad(ours, p)[0], torch.autograd.grad(ref, p)[0], rtol=1e-4, atol=1e-9)


def test_posterior_and_samples_are_the_scripts():
    x = torch.linspace(-12, 12, 1001).unsqueeze(1)
    assert torch.equal(Problem(HALF_BS).posterior(x), Softmax(x))
    torch.manual_seed(5)
    ref = sample_all(torch.distributions.normal.Normal(G_Mean_0, G_std_0),
                     torch.distributions.normal.Normal(G_Mean_1, G_std_1))
    ref_test = torch.distributions.uniform.Uniform(-10, 10).sample(torch.Size([10000, 1]))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(Problem(HALF_BS).sample(g), ref)
    assert torch.equal(Problem.test_points(g), ref_test)


@pytest.mark.parametrize("divergence", TOY_DISTANCES)
def test_compute_c_perturbation(batch, divergence):
    _, x = batch
    ref = compute_C(x, divergence, torch.Generator().manual_seed(7))
    start = torch.empty_like(x).uniform_(-1, 1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(objectives.c_delta(Problem(HALF_BS), x, start, divergence, SETTINGS), ref)


@pytest.mark.parametrize("divergence", ["KL", "LSE", "JSsqrt", "L1"])
@pytest.mark.parametrize("demo", OBJECTIVES)
def test_one_training_step_matches_the_script(batch, demo, divergence):
    model, x = batch
    ref_model, ours = copy.deepcopy(model), _ours(model)
    ref_loss, ref_delta = demo_loss(demo, ref_model, x, divergence, torch.Generator().manual_seed(7))
    ref_model.zero_grad()  # the attacks' backward() filled the parameters' gradients; the script zeroes them
    ref_loss.backward()
    settings = ToySettings(counts=HALF_BS, distance=divergence)
    loss, delta = objectives.training_loss(demo, ours, Problem(HALF_BS), x, torch.Generator().manual_seed(7), settings)
    loss.backward()
    if demo == "Standard":
        assert delta is None
    else:
        assert torch.equal(delta, ref_delta), "perturbations differ"
        assert (delta.abs() < 1).any() and (delta.abs() == 1).any()  # interior maxima and the boundary both occur
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for (name, p), q in zip(ours.named_parameters(), ref_model.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-8), f"gradient of {name} differs"


@pytest.mark.parametrize("divergence_C", ["L1", "KL", "JSsqrt"])
def test_measurement_matches_the_script(batch, divergence_C):
    model, x = batch
    ref_model = copy.deepcopy(model)
    delta = attack_pgd_consistent(ref_model, x, divergence_C, torch.Generator().manual_seed(9))
    ref_score = distance_func(F.softmax(ref_model(x + delta), dim=1), Softmax(x + delta), divergence_C).item()
    ref_standard = distance_func(F.softmax(ref_model(x), dim=1), Softmax(x), divergence_C).item()
    settings = ToySettings(counts=HALF_BS, measure_distance=divergence_C)
    ours = _ours(model)
    start = torch.empty_like(x).uniform_(-1, 1, generator=torch.Generator().manual_seed(9))
    assert torch.equal(objectives.consistent_delta(ours, Problem(HALF_BS), x, start, divergence_C, settings), delta)
    r_score, r_standard = objectives.measure(ours, Problem(HALF_BS), x, torch.Generator().manual_seed(9), settings)
    assert r_score == pytest.approx(ref_score, rel=1e-5)
    assert r_standard == pytest.approx(ref_standard, rel=1e-5)


@pytest.mark.parametrize("demo", OBJECTIVES)
def test_the_whole_script_for_a_few_iterations(demo):
    """C, every iteration's records and the final predictions of the script's main(), from the same seed."""
    iterations, seed = 2, 2
    c_ref, records, x_test, y_test, pre_test = official_main(demo, "KL", "L1", iterations, seed,
                                                             torch.Generator().manual_seed(seed))
    settings = ToySettings(objectives=(demo,), counts=HALF_BS, iterations=iterations, seed=seed,
                               measure_distance="L1")
    start = toy.prepare(settings)
    run = toy.train_objective(toy.Job(demo, settings, start))
    assert start.c["KL"] == pytest.approx(c_ref, rel=1e-5)
    for key, values in records.items():
        assert run["curves"][key] == pytest.approx(values, rel=1e-4), key
    assert run["x_test"] == x_test[:, 0].tolist()
    assert run["truth"] == y_test[:, 0].tolist()
    assert run["learned"] == pytest.approx(pre_test[:, 0].tolist(), abs=1e-5)
