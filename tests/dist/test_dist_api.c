/* nn_dist_* in a world of one process (no mpirun): life cycle, collectives
 * as identities, argument errors, the shard arithmetic against hand-computed
 * and brute-force oracles, out-of-memory sweeps. Runs in builds with and
 * without MPI (with MPI, nn_dist_init starts an MPI singleton). The tests
 * run in order: the last one finalises. */
#include "testutil.h"

#include <string.h>

static int g_argc = 1;
static char *g_argv0 = "test_dist_api";
static char **g_argv = &g_argv0;

/* Linear(3,2) -> BatchNorm1d(2): parameters and buffers (one of them i64). */
static nn_module *small_net(void) {
    nn_generator_seed(NULL, 5);
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_linear_new(3, 2, true)));
    TU_OK(nn_sequential_append(net, nn_batch_norm1d_new(2, 1e-5, 0.1, true)));
    return net;
}

/* Sum of squares of the net's output on a fixed batch, backpropagated. */
static void backward_once(nn_module *net) {
    int64_t shape[2] = {4, 3};
    nn_tensor *x = tu_rand(9, shape, 2, -1, 1);
    nn_scope *s = nn_scope_begin();
    nn_tensor *y = nn_module_forward(net, x);
    TU_OK(nn_backward(nn_sum(nn_mul(y, y), NULL, 0, false)));
    nn_scope_end(s);
    nn_tensor_free(x);
}

static void test_before_init(void **state) {
    (void)state;
    assert_int_equal(nn_dist_rank(), 0);
    assert_int_equal(nn_dist_size(), 1);
    TU_OK(nn_dist_barrier());
    double v[2] = {1.5, -2};
    TU_OK(nn_dist_allreduce_scalar(v, 2));
    assert_true(v[0] == 1.5 && v[1] == -2);
    nn_module *net = small_net();
    assert_int_equal(nn_dist_set_overlap(net, true), NN_ERR_STATE); /* needs init */
    tu_expect_error(NN_ERR_STATE, "nn_dist_set_overlap");
    TU_OK(nn_dist_set_overlap(net, false)); /* off when off: a no-op */
    nn_module_free(net);
    TU_OK(nn_dist_finalize()); /* before init: a no-op, init still works after */
}

static void test_init(void **state) {
    (void)state;
    TU_OK(nn_dist_init(&g_argc, &g_argv));
    TU_OK(nn_dist_init(NULL, NULL)); /* again: a no-op */
    assert_int_equal(nn_dist_rank(), 0);
    assert_int_equal(nn_dist_size(), 1);
    TU_OK(nn_dist_barrier());
    (void)nn_dist_available(); /* either answer is valid; both builds pass below */
}

static void test_broadcast(void **state) {
    (void)state;
    nn_module *net = small_net();
    backward_once(net); /* training-mode forward: BatchNorm buffers move */
    nn_statedict *before = TU_NN(nn_module_state_dict(net));
    nn_statedict *copy = TU_NN(nn_statedict_new());
    for (int64_t i = 0; i < nn_statedict_size(before); i++)
        TU_OK(nn_statedict_set(copy, nn_statedict_name(before, i),
                               nn_tensor_clone(nn_statedict_tensor(before, i))));
    TU_OK(nn_dist_broadcast_module(net, 0));
    for (int64_t i = 0; i < nn_statedict_size(copy); i++) {
        nn_tensor *t = nn_statedict_tensor(copy, i);
        assert_true(nn_tensor_equal(nn_statedict_get(before, nn_statedict_name(copy, i)), t));
        nn_tensor_free(t); /* drop the clone's creation reference; the map keeps one */
    }
    assert_int_equal(nn_dist_broadcast_module(net, 1), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "root 1");
    assert_int_equal(nn_dist_broadcast_module(net, -1), NN_ERR_RANGE);
    tu_expect_error(NN_ERR_RANGE, "nn_dist_broadcast_module");
    assert_int_equal(nn_dist_broadcast_module(NULL, 0), NN_ERR_NULL);
    tu_expect_error(NN_ERR_NULL, "nn_dist_broadcast_module");
    nn_statedict_free(copy);
    nn_statedict_free(before);
    nn_module_free(net);
}

static void test_allreduce_grads(void **state) {
    (void)state;
    nn_module *net = small_net();
    nn_tensor *w = nn_module_get_parameter(net, "0.weight");
    nn_tensor *b = nn_module_get_parameter(net, "0.bias");
    nn_tensor *bn_w = nn_module_get_parameter(net, "1.weight");
    TU_OK(nn_tensor_set_requires_grad(bn_w, false)); /* frozen: skipped */
    backward_once(net);
    TU_OK(nn_tensor_zero_grad(b)); /* no gradient: must stay without one */
    nn_tensor *gw = TU_NN(nn_tensor_clone(nn_tensor_grad(w)));
    TU_OK(nn_dist_allreduce_grads(net));
    assert_true(nn_tensor_equal(nn_tensor_grad(w), gw)); /* mean over one rank */
    assert_null(nn_tensor_grad(b));
    assert_null(nn_tensor_grad(bn_w));
    assert_non_null(nn_tensor_grad(nn_module_get_parameter(net, "1.bias")));
    assert_int_equal(nn_dist_allreduce_grads(NULL), NN_ERR_NULL);
    tu_expect_error(NN_ERR_NULL, "nn_dist_allreduce_grads");
    nn_tensor_free(gw);
    nn_module_free(net);
}

static void test_allreduce_scalar(void **state) {
    (void)state;
    double v[3] = {0.25, 3, -7};
    TU_OK(nn_dist_allreduce_scalar(v, 3));
    assert_true(v[0] == 0.25 && v[1] == 3 && v[2] == -7);
    TU_OK(nn_dist_allreduce_scalar(NULL, 0));
    assert_int_equal(nn_dist_allreduce_scalar(v, -1), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "n is -1");
    assert_int_equal(nn_dist_allreduce_scalar(NULL, 2), NN_ERR_NULL);
    tu_expect_error(NN_ERR_NULL, "nn_dist_allreduce_scalar");
}

/* Hand-computed shards of 10 samples over 3 ranks. */
static void test_shard_hand(void **state) {
    (void)state;
    int64_t out[8];
    static const int64_t r0[] = {0, 3, 6, 9}, r1[] = {1, 4, 7}, r2[] = {2, 5, 8};
    assert_int_equal(nn_dist_shard_indices(10, 0, 3, false, out, 8), 4);
    assert_memory_equal(out, r0, sizeof r0);
    assert_int_equal(nn_dist_shard_indices(10, 1, 3, false, out, 8), 3);
    assert_memory_equal(out, r1, sizeof r1);
    assert_int_equal(nn_dist_shard_indices(10, 2, 3, false, out, 8), 3);
    assert_memory_equal(out, r2, sizeof r2);
    assert_int_equal(nn_dist_shard_indices(10, 0, 3, true, out, 8), 3); /* 9 dropped */
    assert_memory_equal(out, r0, 3 * sizeof *out);
    assert_int_equal(nn_dist_shard_indices(10, 0, 3, false, NULL, 0), 4); /* count only */
    out[2] = -5;
    assert_int_equal(nn_dist_shard_indices(10, 0, 3, false, out, 2), 4); /* truncated */
    assert_int_equal(out[2], -5);
    assert_int_equal(nn_dist_shard_indices(2, 2, 3, false, out, 8), 0); /* more ranks than samples */
}

/* Every (n, size): shards are disjoint, sorted, inside 0..n-1; without even
 * they cover everything; with even they are all floor(n / size) long. */
static void test_shard_sweep(void **state) {
    (void)state;
    int64_t out[40];
    for (int64_t n = 0; n <= 37; n++)
        for (int size = 1; size <= 6; size++)
            for (int even = 0; even <= 1; even++) {
                int seen[40] = {0}, total = 0;
                for (int r = 0; r < size; r++) {
                    int64_t c = nn_dist_shard_indices(n, r, size, even, out, 40);
                    assert_true(c >= 0);
                    if (even) assert_int_equal(c, n / size);
                    for (int64_t k = 0; k < c; k++) {
                        assert_true(out[k] >= 0 && out[k] < n);
                        assert_int_equal(out[k] % size, r);
                        if (k) assert_true(out[k] > out[k - 1]);
                        assert_int_equal(seen[out[k]]++, 0);
                        total++;
                    }
                }
                assert_int_equal(total, even ? n / size * size : n);
            }
}

static void test_shard_errors(void **state) {
    (void)state;
    int64_t out[4];
    assert_int_equal(nn_dist_shard_indices(-1, 0, 1, false, out, 4), -1);
    tu_expect_error(NN_ERR_INVALID, "n -1");
    assert_int_equal(nn_dist_shard_indices(4, 0, 0, false, out, 4), -1);
    tu_expect_error(NN_ERR_INVALID, "size 0");
    assert_int_equal(nn_dist_shard_indices(4, 2, 2, false, out, 4), -1);
    tu_expect_error(NN_ERR_INVALID, "rank 2");
    assert_int_equal(nn_dist_shard_indices(4, -1, 2, false, out, 4), -1);
    tu_expect_error(NN_ERR_INVALID, "rank -1");
    assert_int_equal(nn_dist_shard_indices(4, 0, 2, false, out, -1), -1);
    tu_expect_error(NN_ERR_INVALID, "cap -1");
    assert_int_equal(nn_dist_shard_indices(4, 0, 2, false, NULL, 4), -1);
    tu_expect_error(NN_ERR_NULL, "out");
}

static void test_shard_dataset(void **state) {
    (void)state;
    int64_t xs[2] = {7, 2}, ys[1] = {7};
    nn_tensor *x = tu_rand(3, xs, 2, 0, 1);
    int64_t labels[7] = {6, 5, 4, 3, 2, 1, 0};
    nn_tensor *y = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, ys, 1, labels));
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_dataset *mine = TU_NN(nn_dist_shard_dataset(ds, true));
    assert_int_equal(nn_dataset_len(mine), 7); /* a world of one takes all */
    for (int64_t i = 0; i < 7; i++) assert_int_equal(nn_dataset_label(mine, i), labels[i]);
    assert_null(nn_dist_shard_dataset(NULL, false));
    tu_expect_error(NN_ERR_NULL, "nn_dist_shard_dataset");
    nn_dataset_free(mine);
    nn_dataset_free(ds);
    nn_tensor_free(x);
    nn_tensor_free(y);
}

/* Overlap in a world of one: buckets by the size rule, gradients unchanged. */
static void test_overlap(void **state) {
    (void)state;
    nn_module *net = small_net();
    /* Parameters requiring grad, reversed: BatchNorm bias 8 and weight 8
     * bytes, Linear bias 8 and weight 24. */
    struct {
        size_t cap;
        int64_t want;
    } cases[] = {{1, 4}, {8, 4}, {16, 2}, {24, 2}, {25, 1}, {(size_t)-1, 1}, {(size_t)25 << 20, 1}};
    assert_true(nn_dist_bucket_bytes() == (size_t)25 << 20);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        TU_OK(nn_dist_set_bucket_bytes(cases[k].cap));
        assert_true(nn_dist_bucket_bytes() == cases[k].cap);
        TU_OK(nn_dist_set_overlap(net, true));
        assert_int_equal(nn_dist_num_buckets(), cases[k].want);
    }
    assert_int_equal(nn_dist_set_bucket_bytes(0), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "nn_dist_set_bucket_bytes");
    assert_true(nn_dist_bucket_bytes() == (size_t)25 << 20); /* the last accepted */
    assert_int_equal(nn_dist_set_overlap(NULL, true), NN_ERR_NULL);
    tu_expect_error(NN_ERR_NULL, "nn_dist_set_overlap");

    /* Gradients of two backwards, then the mean over one rank: unchanged. */
    backward_once(net);
    backward_once(net);
    nn_tensor *w = nn_module_parameter(net, 0, NULL);
    float before[6], after[6];
    TU_OK(nn_tensor_copy_to(nn_tensor_grad(w), before, sizeof before));
    TU_OK(nn_dist_allreduce_grads(net));
    TU_OK(nn_tensor_copy_to(nn_tensor_grad(w), after, sizeof after));
    assert_memory_equal(before, after, sizeof before);

    /* Another module takes over; off for a module not overlapped: no-op. */
    nn_module *other = small_net();
    TU_OK(nn_dist_set_overlap(other, true));
    TU_OK(nn_dist_set_overlap(net, false));
    assert_int_equal(nn_dist_num_buckets(), 1);
    TU_OK(nn_dist_set_overlap(other, false));
    assert_int_equal(nn_dist_num_buckets(), 0);
    TU_OK(nn_dist_set_bucket_bytes((size_t)25 << 20));
    nn_module_free(other);
    nn_module_free(net);
}

/* Out-of-memory at every allocation: a clean error, no leak. */
typedef struct oom_ctx {
    nn_module *net;
    nn_dataset *ds;
} oom_ctx;

static int oom_body(void *p) {
    oom_ctx *c = p;
    if (nn_dist_set_overlap(c->net, true) != NN_OK) return 1;
    nn_status st = nn_dist_allreduce_grads(c->net);
    if (nn_dist_set_overlap(c->net, false) != NN_OK || st != NN_OK) return 1;
    if (nn_dist_broadcast_module(c->net, 0) != NN_OK) return 1;
    if (nn_dist_allreduce_grads(c->net) != NN_OK) return 1;
    nn_dataset *mine = nn_dist_shard_dataset(c->ds, true);
    if (!mine) return 1;
    nn_dataset_free(mine);
    return 0;
}

static void test_oom(void **state) {
    (void)state;
    int64_t xs[2] = {5, 2};
    nn_tensor *x = tu_rand(4, xs, 2, 0, 1);
    oom_ctx c = {small_net(), NULL};
    backward_once(c.net);
    c.ds = TU_NN(nn_dataset_from_tensors(x, NULL));
    assert_int_equal(oom_body(&c), 0); /* fill the module's lazy name tables first */
    long sites = tu_oom_sweep(oom_body, &c);
    assert_true(sites >= 1);
    nn_dataset_free(c.ds);
    nn_module_free(c.net);
    nn_tensor_free(x);
}

/* Last: finalize is idempotent, MPI cannot restart. */
static void test_finalize(void **state) {
    (void)state;
    TU_OK(nn_dist_finalize());
    TU_OK(nn_dist_finalize());
    assert_int_equal(nn_dist_rank(), 0);
    assert_int_equal(nn_dist_size(), 1);
    assert_int_equal(nn_dist_init(NULL, NULL), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "nn_dist_finalize");
    nn_module *net = small_net();
    assert_int_equal(nn_dist_set_overlap(net, true), NN_ERR_STATE);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_init),   cmocka_unit_test(test_init),
        cmocka_unit_test(test_broadcast),     cmocka_unit_test(test_allreduce_grads),
        cmocka_unit_test(test_allreduce_scalar), cmocka_unit_test(test_shard_hand),
        cmocka_unit_test(test_shard_sweep),   cmocka_unit_test(test_shard_errors),
        cmocka_unit_test(test_shard_dataset), cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_finalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
