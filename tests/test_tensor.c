/* Tensor core: ownership, dtype conversion against exact values, matmul against a naive loop,
 * per-thread error messages. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

static void version_query_matches_header(void **state) {
    (void)state;
    assert_int_equal(pissa_version_number(), PISSA_VERSION_NUMBER);
    assert_string_equal(pissa_version_string(), PISSA_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", PISSA_VERSION_MAJOR, PISSA_VERSION_MINOR, PISSA_VERSION_PATCH);
    assert_string_equal(buf, pissa_version_string());
}

static void create_wrap_clone_reshape(void **state) {
    (void)state;
    int64_t shape[2] = {3, 4};
    pissa_tensor *t;
    assert_ok(pissa_tensor_create(2, shape, &t));
    assert_int_equal(pissa_tensor_ownership(t), PISSA_OWNED);
    assert_int_equal(pissa_tensor_numel(t), 12);
    assert_int_equal(pissa_tensor_dim(t, -1), 4);
    for (int i = 0; i < 12; i++) assert_true(pissa_tensor_data(t)[i] == 0.0f);
    float buf[12];
    for (int i = 0; i < 12; i++) buf[i] = (float)i;
    pissa_tensor *v, *c;
    assert_ok(pissa_tensor_wrap(buf, 2, shape, &v));
    assert_int_equal(pissa_tensor_ownership(v), PISSA_VIEW);
    assert_ptr_equal(pissa_tensor_data(v), buf);
    assert_ok(pissa_tensor_clone(v, &c));
    assert_int_equal(pissa_tensor_ownership(c), PISSA_OWNED);
    assert_ptr_not_equal(pissa_tensor_data(c), buf);
    assert_memory_equal(pissa_tensor_data(c), buf, sizeof buf);
    int64_t flat[1] = {12}, bad[2] = {5, 2};
    assert_ok(pissa_tensor_reshape(c, 1, flat));
    assert_int_equal(pissa_tensor_ndim(c), 1);
    assert_int_equal(pissa_tensor_reshape(c, 2, bad), PISSA_ERR_SHAPE);
    int64_t neg[1] = {-1};
    pissa_tensor *x = NULL;
    assert_int_equal(pissa_tensor_create(1, neg, &x), PISSA_ERR_INVALID_ARG);
    assert_null(x);
    pissa_tensor_free(t);
    pissa_tensor_free(v);
    pissa_tensor_free(c);
    pissa_tensor_free(NULL);
}

/* float16 / bfloat16 values checked against values computed by hand from the IEEE formats. */
static void f16_bf16_conversions_are_exact_and_round_to_even(void **state) {
    (void)state;
    assert_true(pissa_f16_to_f32(0x3C00) == 1.0f);
    assert_true(pissa_f16_to_f32(0xC000) == -2.0f);
    assert_true(pissa_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(pissa_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(isinf(pissa_f16_to_f32(0x7C00)));
    assert_true(isnan(pissa_f16_to_f32(0x7E00)));
    assert_int_equal(pissa_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(pissa_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(pissa_f32_to_f16(1e6f), 0x7C00);                 /* overflow to Inf */
    assert_int_equal(pissa_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);   /* subnormal */
    assert_int_equal(pissa_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3C00); /* tie -> even */
    assert_int_equal(pissa_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3C02); /* tie -> even (up) */
    /* every finite half round-trips */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        assert_int_equal(pissa_f32_to_f16(pissa_f16_to_f32((uint16_t)h)), h);
    }
    assert_true(pissa_bf16_to_f32(0x3F80) == 1.0f);
    assert_int_equal(pissa_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(pissa_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3F80);     /* tie -> even */
    assert_int_equal(pissa_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3F82); /* tie -> even (up) */
    assert_true(isnan(pissa_bf16_to_f32(pissa_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7F80) == 0x7F80) continue;
        assert_int_equal(pissa_f32_to_bf16(pissa_bf16_to_f32((uint16_t)h)), h);
    }
    /* buffer conversion reads little-endian bytes at any alignment */
    unsigned char bytes[5] = {0xAA, 0x00, 0x3C, 0x00, 0xC0};
    float out[2];
    assert_ok(pissa_convert_to_f32(out, bytes + 1, PISSA_F16, 2));
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    assert_int_equal(pissa_convert_to_f32(out, bytes, PISSA_I64, 1), PISSA_ERR_UNSUPPORTED);
    pissa_dtype dt;
    assert_ok(pissa_dtype_parse("bfloat16", &dt));
    assert_int_equal(dt, PISSA_BF16);
    assert_ok(pissa_dtype_parse("f16", &dt));
    assert_int_equal(dt, PISSA_F16);
    assert_int_equal(pissa_dtype_parse("int4", &dt), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "int4"));
}

static void matmul_matches_naive_loop_for_all_transposes(void **state) {
    (void)state;
    const int64_t m = 7, k = 5, n = 3;
    float a[35], b[15], at[35], bt[15];
    tu_gaussian(a, 35, 1);
    tu_gaussian(b, 15, 2);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < k; j++) at[j * m + i] = a[i * k + j];
    for (int i = 0; i < k; i++)
        for (int j = 0; j < n; j++) bt[j * k + i] = b[i * n + j];
    double ref[21];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int t = 0; t < k; t++) s += (double)a[i * k + t] * b[t * n + j];
            ref[i * n + j] = s;
        }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t sa[2] = {ta ? k : m, ta ? m : k}, sb[2] = {tb ? n : k, tb ? k : n}, sc[2] = {m, n};
            pissa_tensor *A, *B, *C;
            assert_ok(pissa_tensor_wrap(ta ? at : a, 2, sa, &A));
            assert_ok(pissa_tensor_wrap(tb ? bt : b, 2, sb, &B));
            assert_ok(pissa_tensor_create(2, sc, &C));
            for (int i = 0; i < 21; i++) pissa_tensor_data(C)[i] = 1.0f;
            assert_ok(pissa_matmul(C, A, ta, B, tb, 2.0f, 0.5f)); /* C = 2·A·B + 0.5·C */
            for (int i = 0; i < 21; i++) assert_float_equal(pissa_tensor_data(C)[i], 2 * ref[i] + 0.5, 1e-4);
            int64_t wrong[2] = {m, n + 1};
            pissa_tensor *D;
            assert_ok(pissa_tensor_create(2, wrong, &D));
            assert_int_equal(pissa_matmul(D, A, ta, B, tb, 1, 0), PISSA_ERR_SHAPE);
            pissa_tensor_free(A);
            pissa_tensor_free(B);
            pissa_tensor_free(C);
            pissa_tensor_free(D);
        }
}

static void *set_error_in_thread(void *arg) {
    pissa__fail(PISSA_ERR_IO, "thread message %d", *(int *)arg);
    static _Thread_local char copy[64];
    snprintf(copy, sizeof copy, "%s", pissa_last_error());
    return strcmp(copy, "thread message 2") == 0 ? (void *)1 : NULL;
}

static void last_error_is_per_thread(void **state) {
    (void)state;
    pissa__fail(PISSA_ERR_FORMAT, "main thread message");
    pthread_t th;
    int two = 2;
    void *ok = NULL;
    pthread_create(&th, NULL, set_error_in_thread, &two);
    pthread_join(th, &ok);
    assert_non_null(ok);
    assert_string_equal(pissa_last_error(), "main thread message");
    assert_string_equal(pissa_status_name(PISSA_ERR_FORMAT), "PISSA_ERR_FORMAT");
}

static int log_calls;
static void count_log(pissa_log_level level, const char *msg, void *user) {
    (void)level;
    (void)msg;
    *(int *)user += 1;
}

static void log_callback_receives_messages(void **state) {
    (void)state;
    log_calls = 0;
    pissa_set_log_callback(count_log, &log_calls);
    pissa__fail(PISSA_ERR_IO, "logged");
    pissa_set_log_callback(NULL, NULL);
    pissa__fail(PISSA_ERR_IO, "not logged");
    assert_int_equal(log_calls, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_query_matches_header),
        cmocka_unit_test(create_wrap_clone_reshape),
        cmocka_unit_test(f16_bf16_conversions_are_exact_and_round_to_even),
        cmocka_unit_test(matmul_matches_naive_loop_for_all_transposes),
        cmocka_unit_test(last_error_is_per_thread),
        cmocka_unit_test(log_callback_receives_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
