"""The listwise self-distillation term KD of the LSD paper, vectorised (spec criteria.md C.2-C.3)."""
import torch

from criteria.common import label_tensor


def listwise_kd(student, teacher, labels, tau=1.0, beta=1.0):
    """KD = (1/B) Σ_i KL(p_i ‖ q_i), q_i = softmax(M_i ⊙ S_i / τ) of the student's similarity row
    S_i = x_i Xᵀ (self included), p_i likewise from the detached teacher, M_ij = 1 for same-label
    columns and β for the others. One row-wise log_softmax per side replaces the seed's anchor loop."""
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
    # 0·log 0 = 0 for teacher probabilities that underflow (C.2 step 4)
    kl = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(log_q))
    return kl.sum() / len(student)
