import numpy as np
import pytest
import tensorflow as tf

from msbert_tf.losses.emd import sinkhorn_plan, transport_loss


@pytest.mark.parametrize("shape", [(5, 6), (11, 12), (2, 3)])
def test_sinkhorn_agrees_with_exact(shape):
    rng = np.random.default_rng(sum(shape))
    cost = tf.constant(rng.uniform(size=shape), tf.float32)
    a = tf.constant(rng.dirichlet(np.ones(shape[0])), tf.float32)
    b = tf.constant(rng.dirichlet(np.ones(shape[1])), tf.float32)
    exact, exact_plan = transport_loss(cost, a, b, solver="exact")
    native, plan = transport_loss(cost, a, b, solver="sinkhorn", epsilon=1e-3, iterations=3000)
    assert abs(float(native) - float(exact)) <= 1e-3 * float(exact)
    np.testing.assert_allclose(tf.reduce_sum(exact_plan, 1), a, atol=1e-6)
    np.testing.assert_allclose(tf.reduce_sum(plan, 0), b, atol=1e-4)


def test_exact_plan_on_a_hand_example():
    # Two piles each side; moving straight across costs 0, crossing costs 1.
    cost = tf.constant([[0.0, 1.0], [1.0, 0.0]])
    loss, plan = transport_loss(cost, tf.constant([0.5, 0.5]), tf.constant([0.5, 0.5]), solver="exact")
    np.testing.assert_allclose(plan, [[0.5, 0.0], [0.0, 0.5]])
    assert float(loss) == 0.0
    # Unequal masses force 0.25 of mass across at cost 1.
    loss, _ = transport_loss(cost, tf.constant([0.75, 0.25]), tf.constant([0.5, 0.5]), solver="exact")
    assert float(loss) == pytest.approx(0.25)


@pytest.mark.parametrize("solver", ["exact", "sinkhorn"])
def test_gradient_flows_through_cost_with_plan_held(solver):
    cost = tf.Variable([[0.2, 0.9], [0.7, 0.1]])
    a = b = tf.constant([0.5, 0.5])
    with tf.GradientTape() as tape:
        loss, plan = transport_loss(cost, a, b, solver=solver, epsilon=1e-3, iterations=500)
    grad = tape.gradient(loss, cost)
    # d loss / d C = F / sum F when F is held constant.
    np.testing.assert_allclose(grad, plan / tf.reduce_sum(plan), atol=1e-6)


def test_sinkhorn_compiles_with_xla():
    cost = tf.constant(np.random.default_rng(0).uniform(size=(5, 6)), tf.float32)
    a, b = tf.fill((5,), 0.2), tf.fill((6,), 1 / 6)
    eager = sinkhorn_plan(cost, a, b, 0.01, 100)
    compiled = tf.function(sinkhorn_plan, jit_compile=True)(cost, a, b, 0.01, 100)
    np.testing.assert_allclose(eager, compiled, atol=1e-5)
