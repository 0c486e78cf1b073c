"""The listwise self-distillation term KD of the LSD paper, vectorised, and its epoch weight."""
import torch

from criteria.common import label_tensor


def listwise_kd(student, teacher, labels, tau=1.0, beta=1.0):
    """KD = (1/B) Σ_i KL(p_i ‖ q_i), q_i = softmax(M_i ⊙ S_i / τ) of the student's similarity row
    S_i = x_i Xᵀ (self included, as in the seed), p_i likewise from the detached teacher, M_ij = 1 for
    same-label columns and β for the others. One row-wise log_softmax per side replaces the seed's anchor loop."""
    labels = label_tensor(labels, student)
    teacher = teacher.detach()
    student_sim = student @ student.T
    teacher_sim = teacher @ teacher.T
    if beta != 1:
        scale = torch.where(labels[:, None] == labels[None, :],
                            torch.ones((), dtype=student.dtype, device=student.device),
                            torch.full((), beta, dtype=student.dtype, device=student.device))
        student_sim = student_sim * scale
        teacher_sim = teacher_sim * scale.to(teacher_sim.dtype)
    log_q = torch.log_softmax(student_sim / tau, dim=1)
    log_p = torch.log_softmax(teacher_sim / tau, dim=1)
    p = log_p.exp()
    # 0·log 0 = 0 for teacher probabilities that underflow
    kl = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(log_q))
    return kl.sum() / len(student)


class ListwiseDistillation(torch.nn.Module):
    """The KD term with its temperature τ (--kd_tau) and off-class factor β (--kd_beta, 1 under
    --f_distillation_standard; a flag of its own so it never collides with the margin loss's β). A module
    without parameters or state, so that it is a child of the objective."""

    def __init__(self, tau, beta):
        super().__init__()
        self.tau = tau
        self.beta = beta

    @classmethod
    def from_options(cls, opt):
        return cls(opt.kd_tau, 1.0 if opt.f_distillation_standard else opt.kd_beta)

    def forward(self, student, teacher, labels):
        return listwise_kd(student, teacher, labels, self.tau, self.beta)


class DistillationSchedule:
    """w(e) = (e / N)·α·τ²: 0 in epoch 0, (N−1)/N·α·τ² in the last epoch. N is --n_epochs, read once at
    construction (the seed ignores the n_epochs its trainer passes per call)."""

    def __init__(self, alpha, tau, n_epochs):
        self.alpha = alpha
        self.tau = tau
        self.n_epochs = n_epochs

    @classmethod
    def from_options(cls, opt):
        return cls(opt.kd_alpha, opt.kd_tau, opt.n_epochs)

    def __call__(self, epoch):
        return epoch / self.n_epochs * self.alpha * self.tau ** 2
