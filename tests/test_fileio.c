/* Crash-consistent output (pissa/fileio.h): a folder replaced whole by a directory transaction is the complete old or
 * the complete new version at every instant, also when its writer dies; leftovers of dead writers are removed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static void put(const char *dir, const char *name, const char *text) {
    char *p = tu_path(dir, name);
    assert_ok(pissa_write_file_atomic(p, text, strlen(text)));
    free(p);
}

/* The contents of DIR/NAME, or "" when absent. Caller frees. */
static char *get(const char *dir, const char *name) {
    char *p = tu_path(dir, name), *s = tu_slurp(p, NULL);
    free(p);
    return s ? s : strdup("");
}

static void assert_file(const char *dir, const char *name, const char *want) {
    char *got = get(dir, name);
    if (strcmp(got, want) != 0) fail_msg("%s/%s holds '%s', expected '%s'", dir, name, got, want);
    free(got);
}

/* Number of entries of DIR (without . and ..) whose name contains NEEDLE. */
static int count_entries(const char *dir, const char *needle) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c -F '%s'", dir, needle);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (f && fscanf(f, "%d", &n) != 1) n = 0;
    if (f) pclose(f);
    return n;
}

static void commit_replaces_the_folder_and_keeps_what_is_not_dropped(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *dir = tu_path(root, "out");
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t)); /* absent: created by the commit, not before */
    struct stat sb;
    assert_int_not_equal(stat(dir, &sb), 0);
    put(pissa_dir_txn_path(t), "a.json", "A1");
    put(pissa_dir_txn_path(t), "user.txt", "mine");
    assert_ok(pissa_dir_txn_commit(t));
    assert_file(dir, "a.json", "A1");

    static const char *const drop[] = {"a.json", "model-*-of-*.bin", NULL};
    put(dir, "model-00001-of-00002.bin", "old shard");
    assert_ok(pissa_dir_txn_begin(dir, drop, &t));
    const char *tmp = pissa_dir_txn_path(t);
    assert_file(tmp, "user.txt", "mine"); /* carried */
    assert_file(tmp, "a.json", "");       /* dropped */
    assert_file(tmp, "model-00001-of-00002.bin", "");
    put(tmp, "a.json", "A2");
    assert_file(dir, "a.json", "A1"); /* nothing visible before the commit */
    assert_ok(pissa_dir_txn_commit(t));
    assert_file(dir, "a.json", "A2");
    assert_file(dir, "user.txt", "mine");
    assert_file(dir, "model-00001-of-00002.bin", "");
    assert_int_equal(count_entries(root, ".tmp."), 0); /* the old version is gone */
    tu_rmtree(root);
    free(dir);
    free(root);
}

/* Carried files are hard links: the new version costs no copy, and rewriting a file in the new version (by rename,
 * as every library writer does) leaves the old version's file untouched. */
static void carried_files_are_links_and_rewrites_do_not_touch_the_old_version(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *dir = tu_path(root, "out");
    mkdir(dir, 0755);
    put(dir, "big.bin", "weights");
    put(dir, "x.txt", "x1");
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    char *a = tu_path(dir, "big.bin"), *b = tu_path(pissa_dir_txn_path(t), "big.bin");
    struct stat sa, sb;
    assert_int_equal(stat(a, &sa), 0);
    assert_int_equal(stat(b, &sb), 0);
    assert_true(sa.st_ino == sb.st_ino);
    put(pissa_dir_txn_path(t), "x.txt", "x2");
    assert_file(dir, "x.txt", "x1");
    pissa_dir_txn_abort(t); /* the old version stays, whole, and no leftover remains */
    assert_file(dir, "x.txt", "x1");
    assert_file(dir, "big.bin", "weights");
    assert_int_equal(count_entries(root, ".tmp."), 0);
    free(a);
    free(b);
    tu_rmtree(root);
    free(dir);
    free(root);
}

/* An aborted transaction on a folder that did not exist removes the parents it created: a failed run leaves no
 * empty OUT behind. */
static void abort_leaves_no_empty_folders(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *dir = tu_path(root, "a/b/out");
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    put(pissa_dir_txn_path(t), "f", "x");
    pissa_dir_txn_abort(t);
    char *a = tu_path(root, "a");
    struct stat sb;
    assert_int_not_equal(stat(a, &sb), 0);
    free(a);
    tu_rmtree(root);
    free(dir);
    free(root);
}

/* A writer killed at any point leaves the complete old version, and its leftovers are removed by the next
 * transaction on the folder. */
static void a_killed_writer_leaves_the_old_version_and_its_leftovers_are_removed(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *dir = tu_path(root, "out");
    mkdir(dir, 0755);
    put(dir, "a.json", "A1");
    put(dir, "b.json", "B1");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pissa_dir_txn *t;
        if (pissa_dir_txn_begin(dir, NULL, &t) != PISSA_OK) _exit(3);
        put(pissa_dir_txn_path(t), "a.json", "A2");
        char *p = tu_path(pissa_dir_txn_path(t), "half.tmp.1.XXXXXX"); /* a file-level leftover inside, too */
        tu_write_bytes(p, "x", 1);
        raise(SIGKILL); /* between the two writes */
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_file(dir, "a.json", "A1");
    assert_file(dir, "b.json", "B1");
    assert_int_equal(count_entries(root, "out.tmp."), 1); /* the dead writer's new version */
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    assert_int_equal(count_entries(root, "out.tmp."), 1); /* only ours now */
    assert_int_equal(count_entries(pissa_dir_txn_path(t), "half.tmp"), 0);
    pissa_dir_txn_abort(t);
    assert_int_equal(count_entries(root, "out.tmp."), 0);
    tu_rmtree(root);
    free(dir);
    free(root);
}

/* Without RENAME_EXCHANGE (some file systems) the commit moves the old version aside before renaming the new one
 * in. It still gives the new version and no leftovers; and a writer killed between its two renames leaves the old
 * version whole aside, which the next transaction puts back (it once removed both versions as leftovers). */
static void without_exchange_a_kill_between_the_renames_keeps_the_old_version(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *dir = tu_path(root, "out");
    mkdir(dir, 0755);
    put(dir, "a.json", "A1");
    pissa__fileio_no_exchange = 1;
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    put(pissa_dir_txn_path(t), "a.json", "A2");
    assert_ok(pissa_dir_txn_commit(t));
    pissa__fileio_no_exchange = 0;
    assert_file(dir, "a.json", "A2");
    assert_int_equal(count_entries(root, "out."), 0);
    /* the state a kill between the renames leaves: DIR absent, the old version aside, the new one complete */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char aside[64], fresh[64];
    snprintf(aside, sizeof aside, "out.old.%ld.Ab3xYz", (long)dead);
    snprintf(fresh, sizeof fresh, "out.tmp.%ld.Cd4wVu", (long)dead);
    char *aside_path = tu_path(root, aside), *fresh_path = tu_path(root, fresh);
    assert_int_equal(rename(dir, aside_path), 0);
    mkdir(fresh_path, 0755);
    put(fresh_path, "a.json", "A3");
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    assert_file(dir, "a.json", "A2"); /* back in place, as it was */
    assert_file(pissa_dir_txn_path(t), "a.json", "A2");
    pissa_dir_txn_abort(t);
    assert_file(dir, "a.json", "A2");
    assert_int_equal(count_entries(root, "out."), 0); /* the dead writer's new version is gone */
    /* a moved-aside version that DIR already replaced (killed before its removal) is a leftover */
    mkdir(aside_path, 0755);
    put(aside_path, "a.json", "A0");
    assert_ok(pissa_dir_txn_begin(dir, NULL, &t));
    pissa_dir_txn_abort(t);
    assert_file(dir, "a.json", "A2");
    assert_int_equal(count_entries(root, "out."), 0);
    tu_rmtree(root);
    free(aside_path);
    free(fresh_path);
    free(dir);
    free(root);
}

/* A symlink to a folder stays a symlink; the folder it points to gets the new version. */
static void a_symlinked_folder_stays_a_symlink(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *real = tu_path(root, "real"), *link = tu_path(root, "link");
    mkdir(real, 0755);
    assert_int_equal(symlink(real, link), 0);
    pissa_dir_txn *t;
    assert_ok(pissa_dir_txn_begin(link, NULL, &t));
    put(pissa_dir_txn_path(t), "f", "new");
    assert_ok(pissa_dir_txn_commit(t));
    struct stat sb;
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_file(real, "f", "new");
    tu_rmtree(root);
    free(real);
    free(link);
    free(root);
}

static void a_file_in_the_way_is_refused(void **state) {
    (void)state;
    char *root = tu_tempdir("fileio"), *f = tu_path(root, "file");
    tu_write_bytes(f, "x", 1);
    pissa_dir_txn *t = NULL;
    assert_int_equal(pissa_dir_txn_begin(f, NULL, &t), PISSA_ERR_IO);
    assert_non_null(strstr(pissa_last_error(), "not a directory"));
    assert_null(t);
    tu_rmtree(root);
    free(f);
    free(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commit_replaces_the_folder_and_keeps_what_is_not_dropped),
        cmocka_unit_test(carried_files_are_links_and_rewrites_do_not_touch_the_old_version),
        cmocka_unit_test(abort_leaves_no_empty_folders),
        cmocka_unit_test(a_killed_writer_leaves_the_old_version_and_its_leftovers_are_removed),
        cmocka_unit_test(without_exchange_a_kill_between_the_renames_keeps_the_old_version),
        cmocka_unit_test(a_symlinked_folder_stays_a_symlink),
        cmocka_unit_test(a_file_in_the_way_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
