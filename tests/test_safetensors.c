/* safetensors: round trips in every float dtype, the on-disk layout of the reference writer, zero-copy
 * loads, atomic writes, one hostile file per rejection rule of the reference reader, and a mutation /
 * truncation sweep that must never crash. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static char *dir; /* per-run temporary directory */

static int setup(void **state) {
    (void)state;
    dir = tu_tempdir("st");
    return 0;
}
static int teardown(void **state) {
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static char *path_in_dir(const char *name) { return tu_path(dir, name); }

static uint64_t read_le64(const unsigned char *p) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | p[i];
    return n;
}

/* A file made of an 8-byte length LEN_FIELD, HDR_LEN header bytes and DATA_LEN data bytes (0, 1, 2, ...). */
static char *write_raw_file(const char *name, uint64_t len_field, const char *hdr, size_t hdr_len, size_t data_len) {
    char *path = path_in_dir(name);
    unsigned char *buf = malloc(8 + hdr_len + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(buf + 8, hdr, hdr_len);
    for (size_t i = 0; i < data_len; i++) buf[8 + hdr_len + i] = (unsigned char)i;
    tu_write_bytes(path, buf, 8 + hdr_len + data_len);
    free(buf);
    return path;
}

/* Opening PATH fails with WANT, leaves *out NULL, and the message names the file and each needle. */
static void expect_reject(const char *path, pissa_status want, const char *needle1, const char *needle2) {
    pissa_st_file *f = (pissa_st_file *)(uintptr_t)1;
    pissa_status s = pissa_st_open(path, &f);
    const char *msg = pissa_last_error();
    if (s != want) fail_msg("expected %s, got %s: '%s'", pissa_status_name(want), pissa_status_name(s), msg);
    assert_null(f);
    if (!strstr(msg, path)) fail_msg("message '%s' does not name the file", msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message '%s' lacks '%s'", msg, needle1);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message '%s' lacks '%s'", msg, needle2);
}

/* A header given as a C string with DATA_LEN data bytes must be rejected as a format error. */
static void reject_header(const char *hdr, size_t data_len, const char *needle1, const char *needle2) {
    char *path = write_raw_file("hostile.safetensors", strlen(hdr), hdr, strlen(hdr), data_len);
    expect_reject(path, PISSA_ERR_FORMAT, needle1, needle2);
    free(path);
}

static void accept_header(const char *hdr, size_t data_len, size_t want_count) {
    char *path = write_raw_file("ok.safetensors", strlen(hdr), hdr, strlen(hdr), data_len);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), want_count);
    pissa_st_close(f);
    free(path);
}

/* ---------------------------------------------------------------------------------------------- */
/* round trips                                                                                    */

static void round_trip_is_bit_exact_for_values_representable_in_each_dtype(void **state) {
    (void)state;
    enum { N = 4096 };
    float *f32 = malloc(N * sizeof(float)), *f16 = malloc(N * sizeof(float)), *bf16 = malloc(N * sizeof(float));
    tu_gaussian(f32, N, 7);
    for (int i = 0; i < N; i++) {
        f16[i] = (float)((i % 4097) - 2048) / 1024.0f; /* 11 significant bits: exact in float16 */
        bf16[i] = (float)((i % 513) - 256) / 128.0f;   /* 8 significant bits: exact in bfloat16 */
    }
    f16[0] = 65504.0f;               /* largest finite half */
    f16[1] = ldexpf(1.0f, -24);      /* smallest subnormal half */
    bf16[0] = ldexpf(1.0f, 127);     /* huge but exact in bfloat16 */
    int64_t shape[2] = {64, 64};
    int64_t raw_shape[1] = {3};
    int64_t ints[3] = {-1, 0, INT64_MAX};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "w.f32", PISSA_F32, 2, shape, f32));
    assert_ok(pissa_st_writer_add_f32(w, "w.f16", PISSA_F16, 2, shape, f16));
    assert_ok(pissa_st_writer_add_f32(w, "w.bf16", PISSA_BF16, 2, shape, bf16));
    assert_ok(pissa_st_writer_add_raw(w, "ids", PISSA_I64, 1, raw_shape, ints));
    char *path = path_in_dir("roundtrip.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);

    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 4);
    const char *names[3] = {"w.f32", "w.f16", "w.bf16"};
    const pissa_dtype dts[3] = {PISSA_F32, PISSA_F16, PISSA_BF16};
    const float *want[3] = {f32, f16, bf16};
    float *got = malloc(N * sizeof(float));
    for (int k = 0; k < 3; k++) {
        pissa_st_info info;
        assert_ok(pissa_st_find(f, names[k], &info));
        assert_int_equal(info.dtype, dts[k]);
        assert_int_equal(info.ndim, 2);
        assert_int_equal(info.shape[0], 64);
        assert_int_equal(info.shape[1], 64);
        assert_int_equal(info.numel, N);
        assert_int_equal(info.nbytes, N * pissa_dtype_size(dts[k]));
        assert_ok(pissa_st_read_f32(f, names[k], got, N));
        assert_memory_equal(got, want[k], N * sizeof(float));
        pissa_tensor *t;
        assert_ok(pissa_st_load(f, names[k], &t));
        assert_memory_equal(pissa_tensor_data(t), want[k], N * sizeof(float));
        pissa_tensor_free(t);
    }
    pissa_st_info info;
    assert_ok(pissa_st_find(f, "ids", &info));
    assert_int_equal(info.dtype, PISSA_I64);
    assert_memory_equal(info.data, ints, sizeof ints);
    pissa_tensor *t = NULL;
    assert_int_equal(pissa_st_load(f, "ids", &t), PISSA_ERR_UNSUPPORTED);
    assert_null(t);
    assert_non_null(strstr(pissa_last_error(), "'ids'"));
    assert_non_null(strstr(pissa_last_error(), "I64"));
    assert_int_equal(pissa_st_read_f32(f, "w.f32", got, N - 1), PISSA_ERR_SHAPE);
    assert_int_equal(pissa_st_find(f, "absent", &info), PISSA_ERR_NOT_FOUND);
    assert_non_null(strstr(pissa_last_error(), "'absent'"));
    assert_non_null(strstr(pissa_last_error(), path));
    pissa_st_close(f);
    free(got);
    free(f32);
    free(f16);
    free(bf16);
    free(path);
}

/* Arbitrary floats come back as the documented round-to-nearest-even conversion, and the bytes on disk
 * are those 16-bit codes, little-endian. */
static void arbitrary_floats_round_like_the_scalar_conversions(void **state) {
    (void)state;
    enum { N = 1000 };
    float x[N];
    tu_gaussian(x, N, 11);
    for (int i = 0; i < N; i++) x[i] *= 1000.0f;
    int64_t shape[1] = {N};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "h", PISSA_F16, 1, shape, x));
    assert_ok(pissa_st_writer_add_f32(w, "b", PISSA_BF16, 1, shape, x));
    char *path = path_in_dir("rounding.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    float got[N];
    pissa_st_info hi, bi;
    assert_ok(pissa_st_find(f, "h", &hi));
    assert_ok(pissa_st_find(f, "b", &bi));
    const unsigned char *hb = hi.data, *bb = bi.data;
    assert_ok(pissa_st_read_f32(f, "h", got, N));
    for (int i = 0; i < N; i++) {
        uint16_t code = pissa_f32_to_f16(x[i]);
        assert_int_equal(hb[2 * i] | hb[2 * i + 1] << 8, code);
        assert_true(got[i] == pissa_f16_to_f32(code));
    }
    assert_ok(pissa_st_read_f32(f, "b", got, N));
    for (int i = 0; i < N; i++) {
        uint16_t code = pissa_f32_to_bf16(x[i]);
        assert_int_equal(bb[2 * i] | bb[2 * i + 1] << 8, code);
        assert_true(got[i] == pissa_bf16_to_f32(code));
    }
    pissa_st_close(f);
    free(path);
}

static void scalar_and_zero_size_tensors_round_trip(void **state) {
    (void)state;
    float one = 3.5f;
    int64_t empty[2] = {0, 5}, vec0[1] = {0};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "scalar", PISSA_F32, 0, NULL, &one));
    assert_ok(pissa_st_writer_add_f32(w, "empty", PISSA_F32, 2, empty, NULL));
    assert_ok(pissa_st_writer_add_f32(w, "empty16", PISSA_BF16, 1, vec0, NULL));
    char *path = path_in_dir("scalar.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 3);
    pissa_st_info info;
    assert_ok(pissa_st_find(f, "scalar", &info));
    assert_int_equal(info.ndim, 0);
    assert_int_equal(info.numel, 1);
    assert_int_equal(info.nbytes, 4);
    pissa_tensor *t;
    assert_ok(pissa_st_load(f, "scalar", &t));
    assert_int_equal(pissa_tensor_ndim(t), 0);
    assert_true(pissa_tensor_data(t)[0] == 3.5f);
    pissa_tensor_free(t);
    assert_ok(pissa_st_find(f, "empty", &info));
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.shape[1], 5);
    assert_int_equal(info.numel, 0);
    assert_int_equal(info.nbytes, 0);
    assert_ok(pissa_st_load(f, "empty", &t));
    assert_int_equal(pissa_tensor_numel(t), 0);
    pissa_tensor_free(t);
    assert_ok(pissa_st_load(f, "empty16", &t));
    assert_int_equal(pissa_tensor_numel(t), 0);
    pissa_tensor_free(t);
    assert_ok(pissa_st_read_f32(f, "empty", NULL, 0));
    pissa_st_close(f);
    free(path);
}

static void metadata_round_trips_and_format_pt_is_always_present(void **state) {
    (void)state;
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_set_metadata(w, "note", "first"));
    assert_ok(pissa_st_writer_set_metadata(w, "note", "quote \" backslash \\ newline \n é"));
    assert_ok(pissa_st_writer_set_metadata(w, "alpha", "1"));
    char *path = path_in_dir("meta.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 0);
    assert_string_equal(pissa_st_metadata(f, "format"), "pt");
    assert_string_equal(pissa_st_metadata(f, "note"), "quote \" backslash \\ newline \n é");
    assert_string_equal(pissa_st_metadata(f, "alpha"), "1");
    assert_null(pissa_st_metadata(f, "absent"));
    assert_string_equal(pissa_st_path(f), path);
    pissa_st_close(f);
    free(path);
}

static void f32_loads_are_mapped_and_survive_close(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "x", PISSA_F32, 2, shape, x));
    assert_ok(pissa_st_writer_add_f32(w, "y", PISSA_BF16, 2, shape, x));
    char *path = path_in_dir("mapped.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    pissa_tensor *tx, *ty;
    assert_ok(pissa_st_load(f, "x", &tx));
    assert_ok(pissa_st_load(f, "y", &ty));
    pissa_st_info info;
    assert_ok(pissa_st_find(f, "x", &info));
    assert_int_equal(pissa_tensor_ownership(tx), PISSA_MAPPED);
    assert_ptr_equal(pissa_tensor_data(tx), info.data); /* zero copy: the tensor points into the file */
    assert_int_equal(pissa_tensor_ownership(ty), PISSA_OWNED);
    pissa_st_close(f);
    /* The mapping outlives the handle (ASan would flag a read of unmapped memory as a crash). */
    assert_memory_equal(pissa_tensor_data(tx), x, sizeof x);
    assert_int_equal(pissa_tensor_dim(tx, 0), 2);
    assert_int_equal(pissa_tensor_dim(tx, 1), 3);
    assert_memory_equal(pissa_tensor_data(ty), x, sizeof x);
    pissa_tensor_free(tx);
    pissa_tensor_free(ty);
    free(path);
}

/* A hand-built file with F32 data at an odd offset loads as a converted OWNED copy. */
static void unaligned_f32_loads_as_owned_copy(void **state) {
    (void)state;
    const char *hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    float v[2] = {1.25f, -7.0f};
    buf[8 + padded] = 42;
    memcpy(buf + 8 + padded + 1, v, sizeof v);
    char *path = path_in_dir("unaligned.safetensors");
    tu_write_bytes(path, buf, 8 + padded + 9);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    pissa_st_info info;
    assert_ok(pissa_st_info_at(f, 0, &info));
    assert_string_equal(info.name, "a");
    assert_ok(pissa_st_info_at(f, 1, &info));
    assert_string_equal(info.name, "b");
    assert_int_equal(pissa_st_info_at(f, 2, &info), PISSA_ERR_INVALID_ARG);
    pissa_tensor *t;
    assert_ok(pissa_st_load(f, "b", &t));
    assert_int_equal(pissa_tensor_ownership(t), PISSA_OWNED);
    assert_memory_equal(pissa_tensor_data(t), v, sizeof v);
    pissa_tensor_free(t);
    pissa_st_close(f);
    free(path);
}

/* ---------------------------------------------------------------------------------------------- */
/* layout                                                                                         */

/* Byte layout parsed by hand: 8-byte length, the header exactly as serde_json writes it, with tensors in
 * the reference's order (dtype enum descending: I64, F32, BF16, F16, U8; then name), space padding to a
 * multiple of 8, then the data of each tensor at its offsets. */
static void file_layout_matches_the_reference_writer(void **state) {
    (void)state;
    float fb[2] = {1, 2}, fa[3] = {3, 4, 5}, fc[1] = {6}, fd[2] = {7, 8};
    int64_t e[2] = {-2, 9};
    unsigned char u[3] = {1, 2, 3};
    int64_t s1[1] = {1}, s2[1] = {2}, s3[2] = {1, 3}, s22[2] = {2, 1};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_raw(w, "f", PISSA_U8, 2, s3, u));
    assert_ok(pissa_st_writer_add_f32(w, "d", PISSA_F16, 2, s22, fd));
    assert_ok(pissa_st_writer_add_f32(w, "c", PISSA_BF16, 1, s1, fc));
    assert_ok(pissa_st_writer_add_f32(w, "b", PISSA_F32, 1, s2, fb));
    assert_ok(pissa_st_writer_add_f32(w, "a", PISSA_F32, 2, s3, fa));
    assert_ok(pissa_st_writer_add_raw(w, "e", PISSA_I64, 1, s2, e));
    char *path = path_in_dir("layout.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);

    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"e\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[16,28]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[28,36]},"
                       "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[36,38]},"
                       "\"d\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[38,42]},"
                       "\"f\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[42,45]}}";
    size_t len;
    unsigned char *bytes = (unsigned char *)tu_slurp(path, &len);
    assert_non_null(bytes);
    uint64_t n = read_le64(bytes);
    assert_int_equal(n % 8, 0);
    assert_true(n >= strlen(want) && n < strlen(want) + 8);
    assert_memory_equal(bytes + 8, want, strlen(want));
    for (size_t i = strlen(want); i < n; i++) assert_int_equal(bytes[8 + i], ' ');
    assert_int_equal(len, 8 + n + 45);
    const unsigned char *data = bytes + 8 + n;
    assert_memory_equal(data + 0, e, 16);
    assert_memory_equal(data + 16, fa, 12);
    assert_memory_equal(data + 28, fb, 8);
    assert_int_equal(data[36] | data[37] << 8, 0x40C0); /* 6.0 in bfloat16 */
    assert_int_equal(data[38] | data[39] << 8, 0x4700); /* 7.0 in float16 */
    assert_int_equal(data[40] | data[41] << 8, 0x4800); /* 8.0 in float16 */
    assert_memory_equal(data + 42, u, 3);

    /* index order is the order of data offsets */
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    const char *order = "eabcdf";
    for (size_t i = 0; i < 6; i++) {
        pissa_st_info info;
        assert_ok(pissa_st_info_at(f, i, &info));
        assert_int_equal(info.name[0], order[i]);
    }
    pissa_st_close(f);
    free(bytes);
    free(path);
}

/* Byte vectors from the reference implementation's own tests (safetensors/src/tensor.rs): one F32 tensor
 * (a 64-byte header), an empty file, and metadata only. */
static void reader_accepts_the_reference_test_vectors(void **state) {
    (void)state;
    static const unsigned char attn[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34,
        58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97,
        116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0,
        128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const unsigned char meta[] = {40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97,
                                         116, 97, 95, 95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114,
                                         107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32};
    char *path = path_in_dir("vector.safetensors");
    tu_write_bytes(path, attn, sizeof attn);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    float got[6], want[6] = {0, 1, 2, 3, 4, 5};
    assert_ok(pissa_st_read_f32(f, "attn.0", got, 6));
    assert_memory_equal(got, want, sizeof want);
    pissa_st_info info;
    assert_ok(pissa_st_find(f, "attn.0", &info));
    assert_int_equal(info.ndim, 3);
    assert_int_equal(info.shape[2], 3);
    pissa_st_close(f);
    tu_write_bytes(path, empty, sizeof empty);
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 0);
    pissa_st_close(f);
    tu_write_bytes(path, meta, sizeof meta);
    assert_ok(pissa_st_open(path, &f));
    assert_string_equal(pissa_st_metadata(f, "framework"), "pt");
    pissa_st_close(f);
    free(path);
}

/* Thousands of tensors: every one is found by name, and index order follows the offsets. */
static void thousands_of_tensors_are_found_by_name(void **state) {
    (void)state;
    enum { N = 3000 };
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    float vals[N];
    int64_t s1[1] = {1};
    char name[64];
    for (int i = 0; i < N; i++) {
        vals[i] = (float)i;
        snprintf(name, sizeof name, "model.layers.%d.weight", (i * 7919) % N);
        assert_ok(pissa_st_writer_add_f32(w, name, PISSA_F32, 1, s1, &vals[(i * 7919) % N]));
    }
    assert_int_equal(pissa_st_writer_add_f32(w, "model.layers.5.weight", PISSA_F32, 1, s1, vals),
                     PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "model.layers.5.weight"));
    char *path = path_in_dir("many.safetensors");
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.weight", i);
        float v;
        assert_ok(pissa_st_read_f32(f, name, &v, 1));
        assert_true(v == (float)i);
    }
    const unsigned char *prev = NULL;
    for (size_t i = 0; i < N; i++) {
        pissa_st_info info;
        assert_ok(pissa_st_info_at(f, i, &info));
        if (prev) assert_true((const unsigned char *)info.data == prev + 4);
        prev = info.data;
    }
    pissa_st_close(f);
    free(path);
}

/* ---------------------------------------------------------------------------------------------- */
/* writer                                                                                         */

static int fill_calls;
static pissa_status fill_ramp(void *user, const char *name, float *dst, int64_t n) {
    (void)name;
    fill_calls++;
    for (int64_t i = 0; i < n; i++) dst[i] = *(float *)user * (float)i;
    return PISSA_OK;
}
static pissa_status fill_fails(void *user, const char *name, float *dst, int64_t n) {
    (void)user;
    (void)dst;
    (void)n;
    return pissa__fail(PISSA_ERR_NUMERIC, "synthetic failure while producing %s", name);
}

static int count_temp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void fill_callback_streams_values_converted_to_dtype(void **state) {
    (void)state;
    float scale = 0.5f;
    int64_t shape[2] = {100, 300}; /* 30000 values: more than one conversion chunk */
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_fill(w, "ramp", PISSA_BF16, 2, shape, fill_ramp, &scale));
    char *path = path_in_dir("fill.safetensors");
    fill_calls = 0;
    assert_ok(pissa_st_writer_write(w, path));
    assert_int_equal(fill_calls, 1);
    pissa_st_writer_free(w);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    float *got = malloc(30000 * sizeof(float));
    assert_ok(pissa_st_read_f32(f, "ramp", got, 30000));
    for (int i = 0; i < 30000; i++) assert_true(got[i] == pissa_bf16_to_f32(pissa_f32_to_bf16(0.5f * (float)i)));
    free(got);
    pissa_st_close(f);
    free(path);
}

static void failed_write_leaves_the_old_file_intact(void **state) {
    (void)state;
    char *path = path_in_dir("atomic.safetensors");
    float x[2] = {1, 2};
    int64_t shape[1] = {2};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "x", PISSA_F32, 1, shape, x));
    assert_ok(pissa_st_writer_write(w, path));
    pissa_st_writer_free(w);
    size_t len0;
    char *before = tu_slurp(path, &len0);

    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "a_first", PISSA_F32, 1, shape, x)); /* written before the failure */
    assert_ok(pissa_st_writer_add_fill(w, "broken", PISSA_F32, 1, shape, fill_fails, NULL));
    assert_int_equal(pissa_st_writer_write(w, path), PISSA_ERR_NUMERIC);
    const char *msg = pissa_last_error();
    assert_non_null(strstr(msg, "'broken'"));
    assert_non_null(strstr(msg, "synthetic failure"));
    pissa_st_writer_free(w);
    size_t len1;
    char *after = tu_slurp(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    assert_int_equal(count_temp_files(), 0);
    free(before);
    free(after);

    /* A directory that does not exist: IO error, nothing created. */
    char *bad = path_in_dir("no/such/dir/x.safetensors");
    assert_ok(pissa_st_writer_create(&w));
    assert_int_equal(pissa_st_writer_write(w, bad), PISSA_ERR_IO);
    assert_non_null(strstr(pissa_last_error(), bad));
    pissa_st_writer_free(w);
    free(bad);
    free(path);
}

static void writer_rejects_bad_names_shapes_and_dtypes(void **state) {
    (void)state;
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    float x[4] = {0};
    int64_t ok[1] = {4}, neg[2] = {2, -2}, five[5] = {1, 1, 1, 1, 4};
    assert_int_equal(pissa_st_writer_add_f32(w, "", PISSA_F32, 1, ok, x), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_st_writer_add_f32(w, "__metadata__", PISSA_F32, 1, ok, x), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "__metadata__"));
    assert_int_equal(pissa_st_writer_add_f32(w, "bad\xC3", PISSA_F32, 1, ok, x), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_st_writer_add_f32(w, "neg", PISSA_F32, 2, neg, x), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "'neg'"));
    assert_int_equal(pissa_st_writer_add_f32(w, "wide", PISSA_F32, 5, five, x), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_st_writer_add_f32(w, "int", PISSA_I32, 1, ok, x), PISSA_ERR_UNSUPPORTED);
    assert_non_null(strstr(pissa_last_error(), "I32"));
    assert_int_equal(pissa_st_writer_add_f32(w, "dt", (pissa_dtype)99, 1, ok, x), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_st_writer_add_f32(w, "null", PISSA_F32, 1, ok, NULL), PISSA_ERR_INVALID_ARG);
    assert_ok(pissa_st_writer_add_f32(w, "x", PISSA_F32, 1, ok, x));
    assert_int_equal(pissa_st_writer_add_raw(w, "x", PISSA_I32, 1, ok, x), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "'x'"));
    assert_int_equal(pissa_st_writer_set_metadata(w, "k", "\xFF"), PISSA_ERR_INVALID_ARG);
    pissa_st_writer_free(w);
    pissa_st_writer_free(NULL);
    pissa_st_close(NULL);
}

/* ---------------------------------------------------------------------------------------------- */
/* rejection rules of the reference reader, one hostile file each                                 */

#define T1(name, dt, shape, off) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static void rejects_file_shorter_than_8_bytes(void **state) {
    (void)state;
    for (size_t len = 0; len < 8; len++) {
        char *path = path_in_dir("short.safetensors");
        tu_write_bytes(path, "\x02\0\0\0\0\0\0", len);
        expect_reject(path, PISSA_ERR_FORMAT, "too short", NULL);
        free(path);
    }
}

static void rejects_header_length_above_limit(void **state) {
    (void)state;
    char *path = write_raw_file("huge.safetensors", PISSA_ST_MAX_HEADER + 1, "{}", 2, 0);
    expect_reject(path, PISSA_ERR_FORMAT, "100000001", "limit");
    free(path);
    path = write_raw_file("huge.safetensors", UINT64_MAX, "{}", 2, 0);
    expect_reject(path, PISSA_ERR_FORMAT, "limit", NULL);
    free(path);
}

static void rejects_header_length_beyond_file(void **state) {
    (void)state;
    char *path = write_raw_file("past.safetensors", 3, "{}", 2, 0);
    expect_reject(path, PISSA_ERR_FORMAT, "past the end of the file", NULL);
    free(path);
}

static void rejects_header_that_is_not_utf8(void **state) {
    (void)state;
    /* overlong '/', overlong NUL, UTF-16 surrogate, above U+10FFFF, truncated sequence, lone continuation */
    const char *bad[] = {"\xC0\xAF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80", "\xFF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char hdr[128];
        snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"k\":\"%s\"}}", bad[i]);
        reject_header(hdr, 0, "not valid UTF-8", "byte 22");
    }
    accept_header("{\"__metadata__\":{\"k\":\"\xF4\x8F\xBF\xBF \xE2\x82\xAC \xC3\xA9\"}}", 0, 0); /* U+10FFFF € é */
}

static void rejects_header_that_is_not_json(void **state) {
    (void)state;
    reject_header("{\"a\":", 0, "not valid JSON", NULL);
    reject_header("not json", 0, "not valid JSON", NULL);
    reject_header("{} {}", 0, "trailing characters", NULL);
    reject_header("{\"__metadata__\":{\"k\":\"tab\there\"}}", 0, "control character", NULL);
    reject_header("\xEF\xBB\xBF{}", 0, "byte order mark", NULL);
    char *path = write_raw_file("empty-header.safetensors", 0, "", 0, 0);
    expect_reject(path, PISSA_ERR_FORMAT, "not valid JSON", NULL);
    free(path);
    accept_header(" \n{}\t ", 0, 0); /* JSON whitespace around the object is fine */
}

static void rejects_top_level_that_is_not_an_object(void **state) {
    (void)state;
    reject_header("[1, 2]", 0, "not a JSON object", NULL);
    reject_header("\"x\"", 0, "not a JSON object", NULL);
}

static void rejects_entry_that_is_not_an_object(void **state) {
    (void)state;
    reject_header("{\"w\":[0,4]}", 4, "tensor 'w'", "not a JSON object");
}

static void rejects_entry_with_unknown_field(void **state) {
    (void)state;
    reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"stride\":[1]}}", 4, "tensor 'w'",
                  "unknown field 'stride'");
    reject_header("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "tensor 'w'", "'dtype' appears twice");
}

static void rejects_entry_with_missing_field(void **state) {
    (void)state;
    reject_header("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w'", "missing field 'shape'");
    reject_header("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'", "missing field 'dtype'");
    reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w'", "missing field 'data_offsets'");
}

static void rejects_unknown_dtype(void **state) {
    (void)state;
    reject_header("{" T1("w", "F33", "[1]", "[0,4]") "}", 4, "tensor 'w'", "unknown dtype 'F33'");
    reject_header("{" T1("w", "f32", "[1]", "[0,4]") "}", 4, "tensor 'w'", "unknown dtype 'f32'"); /* exact case */
    reject_header("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
                  "dtype is not a string");
}

static void rejects_shape_that_is_not_non_negative_integers(void **state) {
    (void)state;
    const char *what = "shape is not an array of non-negative integers";
    reject_header("{" T1("w", "F32", "[-1]", "[0,4]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[1.5]", "[0,4]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[\"1\"]", "[0,4]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[9007199254740993]", "[0,4]") "}", 4, "tensor 'w'", what); /* 2^53 + 1 */
    reject_header("{" T1("w", "F32", "4", "[0,4]") "}", 4, "tensor 'w'", "shape is not an array");
}

static void rejects_data_offsets_that_are_not_two_integers(void **state) {
    (void)state;
    const char *what = "data_offsets is not an array of 2 non-negative integers";
    reject_header("{" T1("w", "F32", "[1]", "[0,4,8]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[1]", "[-4,0]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[1]", "[0]") "}", 4, "tensor 'w'", what);
    reject_header("{" T1("w", "F32", "[1]", "{}") "}", 4, "tensor 'w'", what);
}

static void rejects_metadata_that_is_not_string_to_string(void **state) {
    (void)state;
    reject_header("{\"__metadata__\":{\"format\":\"pt\",\"n\":3}}", 0, "__metadata__ value of 'n'", "not a string");
    reject_header("{\"__metadata__\":[\"pt\"]}", 0, "__metadata__", "not a JSON object");
    reject_header("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ key 'k'", "twice");
    reject_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice", NULL);
    accept_header("{\"__metadata__\":null}", 0, 0); /* the reference reads null as no metadata */
}

static void rejects_duplicate_tensor_names(void **state) {
    (void)state;
    reject_header("{" T1("w", "F32", "[1]", "[0,4]") "," T1("w", "F32", "[1]", "[4,8]") "}", 8, "tensor 'w'",
                  "appears twice");
}

static void rejects_hole_in_data_offsets(void **state) {
    (void)state;
    reject_header("{" T1("a", "F32", "[1]", "[0,4]") "," T1("b", "F32", "[1]", "[8,12]") "}", 12, "tensor 'b'",
                  "hole");
    reject_header("{" T1("a", "F32", "[1]", "[4,8]") "}", 8, "tensor 'a'", "hole"); /* not starting at 0 */
}

static void rejects_overlapping_data_offsets(void **state) {
    (void)state;
    reject_header("{" T1("a", "F32", "[2]", "[0,8]") "," T1("b", "F32", "[1]", "[4,8]") "}", 8, "tensor 'b'",
                  "overlap 'a'");
    reject_header("{" T1("a", "F32", "[1]", "[0,4]") "," T1("b", "F32", "[1]", "[0,4]") "}", 4, "overlap", NULL);
}

static void rejects_end_before_begin(void **state) {
    (void)state;
    reject_header("{" T1("w", "F32", "[0]", "[4,0]") "}", 4, "tensor 'w'", "[4, 0] end before they begin");
}

static void rejects_size_that_disagrees_with_shape_and_dtype(void **state) {
    (void)state;
    reject_header("{" T1("x.weight", "F32", "[2,2]", "[0,12]") "}", 12,
                  "tensor 'x.weight': data_offsets [0, 12] hold 12 bytes but shape [2, 2] of F32 needs 16", NULL);
    reject_header("{" T1("h", "BF16", "[3]", "[0,4]") "}", 4, "tensor 'h'", "needs 6");
}

static void rejects_shape_whose_byte_size_overflows(void **state) {
    (void)state;
    /* 2^26 · 2^26 · 2^26 elements overflow 64 bits; 2^31 · 2^31 elements fit but not their 2^65 bytes of F64. */
    reject_header("{" T1("w", "F32", "[67108864,67108864,67108864]", "[0,4]") "}", 4, "tensor 'w'", "overflow");
    reject_header("{" T1("w", "F64", "[2147483648,2147483648]", "[0,4]") "}", 4, "tensor 'w'", "overflow");
}

static void rejects_trailing_bytes_and_short_buffer(void **state) {
    (void)state;
    reject_header("{" T1("w", "F32", "[2]", "[0,8]") "}", 9, "trailing bytes", "cover 8 bytes");
    reject_header("{" T1("w", "F32", "[2]", "[0,8]") "}", 7, "file truncated", "holds 7");
}

static void more_than_four_dims_is_unsupported_and_named(void **state) {
    (void)state;
    const char *hdr = "{" T1("w5", "F32", "[1,1,1,1,2]", "[0,8]") "}";
    char *path = write_raw_file("wide.safetensors", strlen(hdr), hdr, strlen(hdr), 8);
    expect_reject(path, PISSA_ERR_UNSUPPORTED, "tensor 'w5'", "5 dimensions");
    free(path);
    /* a format error elsewhere still takes precedence */
    reject_header("{" T1("w5", "F32", "[1,1,1,1,2]", "[0,8]") "}", 9, "trailing bytes", NULL);
}

static void missing_file_is_an_io_error_naming_it(void **state) {
    (void)state;
    char *path = path_in_dir("does-not-exist.safetensors");
    expect_reject(path, PISSA_ERR_IO, NULL, NULL);
    free(path);
}

/* ---------------------------------------------------------------------------------------------- */
/* robustness                                                                                     */

static void open_and_read_everything(const char *path) {
    pissa_st_file *f = NULL;
    if (pissa_st_open(path, &f) != PISSA_OK) {
        assert_null(f);
        assert_true(pissa_last_error()[0] != '\0');
        return;
    }
    for (size_t i = 0; i < pissa_st_count(f); i++) {
        pissa_st_info info;
        assert_ok(pissa_st_info_at(f, i, &info));
        pissa_tensor *t = NULL;
        if (pissa_st_load(f, info.name, &t) == PISSA_OK) {
            volatile float sum = 0;
            for (int64_t k = 0; k < pissa_tensor_numel(t); k++) sum += pissa_tensor_data(t)[k];
            (void)sum;
        }
        pissa_tensor_free(t);
    }
    pissa_st_close(f);
}

static void mutated_and_truncated_files_never_crash(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "a.weight", PISSA_F32, 2, s23, x));
    assert_ok(pissa_st_writer_add_f32(w, "b", PISSA_BF16, 1, s3, x));
    assert_ok(pissa_st_writer_add_f32(w, "c", PISSA_F16, 0, NULL, x));
    char *good = path_in_dir("good.safetensors");
    assert_ok(pissa_st_writer_write(w, good));
    pissa_st_writer_free(w);
    size_t len;
    unsigned char *orig = (unsigned char *)tu_slurp(good, &len);
    unsigned char *buf = malloc(len);
    char *path = path_in_dir("mutant.safetensors");

    /* every proper prefix is rejected */
    for (size_t cut = 0; cut < len; cut++) {
        tu_write_bytes(path, orig, cut);
        pissa_st_file *f = NULL;
        assert_int_not_equal(pissa_st_open(path, &f), PISSA_OK);
        assert_null(f);
    }

    /* random byte mutations, mostly inside the header, sometimes several at once */
    pissa_rng r;
    pissa__rng_seed(&r, 1234);
    uint64_t hdr_end = 8 + read_le64(orig);
    const unsigned char interesting[] = {'{', '}', '[', ']', '"', ',', ':', '-', '.', '0', '9', 'e', '\\', 0, 0x80,
                                         0xC0, 0xED, 0xF4, 0xFF, ' '};
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, orig, len);
        int nmut = 1 + (int)(pissa__rng_u64(&r) % 3);
        for (int m = 0; m < nmut; m++) {
            uint64_t u = pissa__rng_u64(&r);
            size_t pos = (u & 7) ? (size_t)((u >> 8) % hdr_end) : (size_t)((u >> 8) % len);
            buf[pos] = (u >> 4 & 1) ? interesting[(u >> 40) % sizeof interesting] : (unsigned char)(u >> 48);
        }
        tu_write_bytes(path, buf, len);
        pissa_st_file *f = NULL;
        if (pissa_st_open(path, &f) == PISSA_OK) accepted++;
        pissa_st_close(f);
        open_and_read_everything(path);
    }
    print_message("mutation sweep: %d of 3000 mutants accepted (e.g. changed data bytes or padding)\n", accepted);
    free(buf);
    free(orig);
    free(path);
    free(good);
}

/* The reader parses exactly the N header bytes the file declares, inside the mapping, where no NUL follows them: a
 * header that is not JSON by itself is refused even when the tensor data after it would complete it (a parser
 * reading on to a NUL would accept this file), and every prefix of a valid header, cut at the end of the file, is
 * refused with a message naming the file. */
static void header_is_parsed_to_its_declared_length_only(void **state) {
    (void)state;
    const char *whole = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t n = strlen(whole);
    char *path = path_in_dir("declared.safetensors");
    unsigned char buf[256];
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)(n - 1) >> (8 * i));
    memcpy(buf + 8, whole, n);       /* the header's last byte '}' counts as the first data byte ... */
    memcpy(buf + 8 + n, "   ", 3);   /* ... and the rest of the 4 data bytes are spaces */
    tu_write_bytes(path, buf, 8 + n + 3);
    expect_reject(path, PISSA_ERR_FORMAT, "not valid JSON", NULL);
    /* the same bytes with the brace inside the declared header: accepted, 4 data bytes */
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8 + n, "    ", 4);
    tu_write_bytes(path, buf, 8 + n + 4);
    pissa_st_file *f;
    assert_ok(pissa_st_open(path, &f));
    assert_int_equal(pissa_st_count(f), 1);
    pissa_st_close(f);
    /* every proper prefix of the header, ending the file, declared as the whole header */
    for (size_t cut = 0; cut < n; cut++) {
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)cut >> (8 * i));
        tu_write_bytes(path, buf, 8 + cut);
        expect_reject(path, PISSA_ERR_FORMAT, "header", NULL);
    }
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_is_bit_exact_for_values_representable_in_each_dtype),
        cmocka_unit_test(arbitrary_floats_round_like_the_scalar_conversions),
        cmocka_unit_test(scalar_and_zero_size_tensors_round_trip),
        cmocka_unit_test(metadata_round_trips_and_format_pt_is_always_present),
        cmocka_unit_test(f32_loads_are_mapped_and_survive_close),
        cmocka_unit_test(unaligned_f32_loads_as_owned_copy),
        cmocka_unit_test(file_layout_matches_the_reference_writer),
        cmocka_unit_test(reader_accepts_the_reference_test_vectors),
        cmocka_unit_test(thousands_of_tensors_are_found_by_name),
        cmocka_unit_test(fill_callback_streams_values_converted_to_dtype),
        cmocka_unit_test(failed_write_leaves_the_old_file_intact),
        cmocka_unit_test(writer_rejects_bad_names_shapes_and_dtypes),
        cmocka_unit_test(rejects_file_shorter_than_8_bytes),
        cmocka_unit_test(rejects_header_length_above_limit),
        cmocka_unit_test(rejects_header_length_beyond_file),
        cmocka_unit_test(rejects_header_that_is_not_utf8),
        cmocka_unit_test(rejects_header_that_is_not_json),
        cmocka_unit_test(rejects_top_level_that_is_not_an_object),
        cmocka_unit_test(rejects_entry_that_is_not_an_object),
        cmocka_unit_test(rejects_entry_with_unknown_field),
        cmocka_unit_test(rejects_entry_with_missing_field),
        cmocka_unit_test(rejects_unknown_dtype),
        cmocka_unit_test(rejects_shape_that_is_not_non_negative_integers),
        cmocka_unit_test(rejects_data_offsets_that_are_not_two_integers),
        cmocka_unit_test(rejects_metadata_that_is_not_string_to_string),
        cmocka_unit_test(rejects_duplicate_tensor_names),
        cmocka_unit_test(rejects_hole_in_data_offsets),
        cmocka_unit_test(rejects_overlapping_data_offsets),
        cmocka_unit_test(rejects_end_before_begin),
        cmocka_unit_test(rejects_size_that_disagrees_with_shape_and_dtype),
        cmocka_unit_test(rejects_shape_whose_byte_size_overflows),
        cmocka_unit_test(rejects_trailing_bytes_and_short_buffer),
        cmocka_unit_test(more_than_four_dims_is_unsupported_and_named),
        cmocka_unit_test(missing_file_is_an_io_error_naming_it),
        cmocka_unit_test(mutated_and_truncated_files_never_crash),
        cmocka_unit_test(header_is_parsed_to_its_declared_length_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
