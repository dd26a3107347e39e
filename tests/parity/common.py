"""What every architecture's parity test asserts about one case."""

from segparity.comparison.tolerance import compare
from segparity.parity.suite import Case, run_case
from segparity.comparison.trace import INSTANCE_QUANTITIES, QUANTITIES


def assert_case_agrees(case: Case, *, reference_logits=None):
    """Run ``case`` in torch and Keras; every quantity and every tensor must agree at rtol 1e-4 and atol
    1e-5 plus twice torch's float32 floor (gradients normalised; ``segparity.comparison.trace``).
    ``reference_logits``: optional ``images -> {"eval": logits, "train": logits}`` of a third
    implementation, which both frameworks must also match on the batch used. Returns the ``CaseResult``."""
    result = run_case(case)
    has_bn = bool(result.traces["torch"]["bn_running"])
    has_embedding = case.spec().embedding_dim > 0
    has_aux = case.options.get("aux_loss", False)  # torchvision's models with their auxiliary head
    assert [r.quantity for r in result.rows] == [q for q in QUANTITIES if (has_bn or q != "bn_running")
                                                 and (has_embedding or q not in INSTANCE_QUANTITIES)
                                                 and (has_aux or q != "aux_eval")]
    failures = [c for comparisons in result.per_tensor.values() for c in comparisons if not c.passed]
    references = reference_logits(result.inputs.images) if reference_logits else {}
    for mode, exact in references.items():
        for framework, trace in result.traces.items():
            check = compare(trace[f"logits_{mode}"], exact, quantity=f"{framework} logits_{mode} vs reference")
            failures += [] if check.passed else [check]
    assert not failures, "\n".join(
        f"{c.quantity}: max abs {c.max_abs:.2e}, max rel {c.max_rel:.2e} ({c.detail})" for c in failures)
    return result
