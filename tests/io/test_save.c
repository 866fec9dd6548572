/* Saving to a path: the target's permission bits are kept, symlinks are
 * followed (the link survives), non-regular targets are refused, and temp
 * files left by killed saves are removed by the next save to that path while
 * a live saver's temp file (another process or thread) is never touched. */
#include "testutil.h"
#include "io/io_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* tu_tmpdir()/rel, in a buffer that lives as long as the enclosing block. */
static const char *path_in(char *buf, const char *rel) {
    snprintf(buf, 512, "%s/%s", tu_tmpdir(), rel);
    return buf;
}
#define at(rel) path_in((char[512]){0}, rel)

/* Names in dir containing substr. */
static int count_named(const char *dir, const char *substr) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && strstr(e->d_name, substr)) n++;
    if (d) closedir(d);
    return n;
}

/* A tiny model whose metadata says who saved it. */
static nn_status save_as(const char *path, const char *who) {
    nn_module *net = nn_linear_new(2, 2, false);
    nn_meta *meta = nn_meta_new();
    nn_status st = net && meta ? nn_meta_set_string(meta, "who", who) : NN_ERR_NOMEM;
    if (!st) st = nn_model_save(net, path, meta, NULL);
    nn_meta_free(meta);
    nn_module_free(net);
    return st;
}

/* Load path and check who saved it. */
static void assert_saved_by(const char *path, const char *who) {
    nn_model *m = TU_NN(nn_model_load(path, NULL));
    const char *got = nn_meta_get_string(nn_model_meta(m), "who");
    assert_non_null(got);
    assert_string_equal(got, who);
    nn_model_free(m);
}

static unsigned mode_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

/* ----------------------------------------------------------- mode */

static void test_mode_kept(void **s) {
    (void)s;
    mode_t old_mask = umask(022);
    const char *p = at("mode.nnm");
    TU_OK(save_as(p, "a")); /* a new file: 0666 minus the umask, like fopen */
    assert_int_equal(mode_of(p), 0644);
    const unsigned modes[] = {0600, 0640, 0604, 0400, 0664};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(chmod(p, modes[i]), 0);
        TU_OK(save_as(p, "b"));
        assert_int_equal(mode_of(p), modes[i]); /* the old code gave 0644 every time */
        assert_saved_by(p, "b");
    }
    umask(077);
    const char *q = at("private.nnm");
    TU_OK(save_as(q, "c"));
    assert_int_equal(mode_of(q), 0600);
    umask(old_mask);
    assert_int_equal(count_named(tu_tmpdir(), ".nnm-tmp."), 0);
}

/* -------------------------------------------------------- symlinks */

static void test_symlinks_followed(void **s) {
    (void)s;
    char real_dir[600];
    snprintf(real_dir, sizeof real_dir, "%s/real", tu_tmpdir());
    assert_int_equal(mkdir(real_dir, 0755), 0);
    const char *real = at("real/model.nnm"), *link = at("link.nnm"), *link2 = at("link2.nnm");
    TU_OK(save_as(real, "old"));
    assert_int_equal(chmod(real, 0600), 0);
    assert_int_equal(symlink("real/model.nnm", link), 0); /* relative to the link's directory */
    TU_OK(save_as(link, "via link"));
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode)); /* the old code replaced the link by a regular file */
    char buf[256];
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "real/model.nnm");
    assert_saved_by(real, "via link");
    assert_int_equal(mode_of(real), 0600);
    /* The temp file was made beside the target, and nothing is left over. */
    assert_int_equal(count_named(tu_tmpdir(), ".nnm-tmp."), 0);
    assert_int_equal(count_named(real_dir, ".nnm-tmp."), 0);
    assert_int_equal(count_named(real_dir, "model.nnm"), 1);

    /* A chain of links with an absolute hop. */
    assert_int_equal(symlink(link, link2), 0);
    TU_OK(save_as(link2, "via chain"));
    assert_int_equal(lstat(link2, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_saved_by(real, "via chain");

    /* A dangling link: its target is created. */
    const char *dangling = at("dangling.nnm");
    assert_int_equal(symlink("real/new.nnm", dangling), 0);
    TU_OK(save_as(dangling, "new"));
    assert_int_equal(lstat(dangling, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_saved_by(at("real/new.nnm"), "new");

    /* A loop is an error; nothing is created. */
    assert_int_equal(symlink("loop-b", at("loop-a")), 0);
    assert_int_equal(symlink("loop-a", at("loop-b")), 0);
    assert_int_equal(save_as(at("loop-a"), "x"), NN_ERR_IO);
    tu_expect_error(NN_ERR_IO, "symbolic links");
    assert_int_equal(count_named(tu_tmpdir(), ".nnm-tmp."), 0);

    /* A link to a directory, and a path ending in '/': refused. */
    assert_int_equal(symlink("real", at("dirlink")), 0);
    assert_int_equal(save_as(at("dirlink"), "x"), NN_ERR_IO);
    tu_expect_error(NN_ERR_IO, "not a regular file");
    assert_int_equal(save_as(at("real/"), "x"), NN_ERR_INVALID);
    assert_int_equal(count_named(real_dir, ".nnm-tmp."), 0);
}

/* A FIFO (or a device) is never replaced by a rename. */
static void test_non_regular_refused(void **s) {
    (void)s;
    const char *fifo = at("pipe.nnm");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(save_as(fifo, "x"), NN_ERR_IO);
    tu_expect_error(NN_ERR_IO, "not a regular file");
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode)); /* the old code renamed a file over it */
    assert_int_equal(count_named(tu_tmpdir(), ".nnm-tmp."), 0);
}

/* ----------------------------------------------------- stale temps */

static ssize_t die_write(int fd, const void *b, size_t n) {
    (void)fd, (void)b, (void)n;
    raise(SIGKILL); /* killed in the middle of a save */
    return -1;
}

/* Fork a child that saves to path and is killed while writing. */
static void killed_save(const char *path) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        nn__io_sys_ops.write = die_write;
        save_as(path, "killed");
        _exit(3); /* not reached */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* A pid that no longer exists (a reaped child's; reuse within the test is
 * not a concern: the lock, not the pid, decides on Linux file systems). */
static long dead_pid(void) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return (long)pid;
}

static void touch(const char *path) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
}

static void test_stale_temps_removed(void **s) {
    (void)s;
    const char *p = at("stale.nnm");
    TU_OK(save_as(p, "first"));
    for (int i = 0; i < 3; i++) {
        killed_save(p);
        /* Each killed save removed the one before: one temp file is left
         * (the old code kept all of them, under another naming scheme). */
        assert_int_equal(count_named(tu_tmpdir(), "stale.nnm.nnm-tmp."), 1);
    }
    assert_saved_by(p, "first"); /* the kills did not touch the model */

    /* A hand-made stale temp of a dead pid, and look-alikes that are not
     * this library's temp files for this target: those stay. */
    char name[256];
    long dead = dead_pid();
    snprintf(name, sizeof name, "stale.nnm.nnm-tmp.%ld.0123456789abcdef", dead);
    touch(at(name));
    const char *keep[] = {"stale.nnm.nnm-tmp.12.0123456789abcde",  /* 15 hex digits */
                          "stale.nnm.nnm-tmp.12.0123456789abcdef0", /* 17 */
                          "stale.nnm.nnm-tmp.x.0123456789abcdef",   /* no pid */
                          "stale.nnm.nnm-tmp.12.0123456789ABCDEF",  /* upper case */
                          "other.nnm.nnm-tmp.12.0123456789abcdef",  /* another target */
                          "stale.nnm.tmp-12-0-1"};
    size_t nkeep = sizeof keep / sizeof keep[0];
    for (size_t i = 0; i < nkeep; i++) touch(at(keep[i]));

    TU_OK(save_as(p, "second"));
    assert_saved_by(p, "second");
    assert_int_equal(access(at(name), F_OK), -1);
    for (size_t i = 0; i < nkeep; i++) assert_int_equal(access(at(keep[i]), F_OK), 0);
    /* Only the look-alikes remain besides the model. */
    assert_int_equal(count_named(tu_tmpdir(), "stale.nnm.nnm-tmp."), 4);
    for (size_t i = 0; i < nkeep; i++) unlink(at(keep[i]));
}

/* A live saver in another process, stopped inside its write: a save to the
 * same path by us must leave its temp file alone, and its save then
 * completes. */
static int g_notify_fd = -1, g_go_fd = -1;
static ssize_t paused_write(int fd, const void *b, size_t n) {
    char c = 'w';
    if (write(g_notify_fd, &c, 1) != 1 || read(g_go_fd, &c, 1) != 1) return -1;
    return write(fd, b, n);
}

static void test_live_saver_untouched(void **s) {
    (void)s;
    const char *p = at("live.nnm");
    TU_OK(save_as(p, "old"));
    int notify[2], go[2];
    assert_int_equal(pipe(notify), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(notify[0]); /* so that the child sees EOF, not a hang, if the parent dies */
        close(go[1]);
        g_notify_fd = notify[1];
        g_go_fd = go[0];
        nn__io_sys_ops.write = paused_write;
        _exit(save_as(p, "child") == NN_OK ? 0 : 1);
    }
    close(notify[1]);
    close(go[0]);
    char c;
    assert_int_equal(read(notify[0], &c, 1), 1); /* the child holds its temp file */
    assert_int_equal(count_named(tu_tmpdir(), "live.nnm.nnm-tmp."), 1);
    TU_OK(save_as(p, "parent"));
    assert_int_equal(count_named(tu_tmpdir(), "live.nnm.nnm-tmp."), 1); /* still there */
    assert_saved_by(p, "parent");
    assert_int_equal(write(go[1], "g", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* its rename found its temp file */
    assert_saved_by(p, "child");
    assert_int_equal(count_named(tu_tmpdir(), "live.nnm.nnm-tmp."), 0);
    close(notify[0]);
    close(go[1]);
}

/* Threads of one process saving to one path: each thread's temp file is
 * live to the others' cleanup; every save succeeds. */
static void *save_loop(void *arg) {
    const char *who = arg;
    for (int i = 0; i < 40; i++)
        if (save_as(at("threads.nnm"), who) != NN_OK) return (void *)1;
    return NULL;
}

static void test_threads_same_path(void **s) {
    (void)s;
    pthread_t t[4];
    char *who[4] = {"t0", "t1", "t2", "t3"};
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, save_loop, who[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        assert_int_equal(pthread_join(t[i], &rc), 0);
        assert_null(rc);
    }
    nn_model *m = TU_NN(nn_model_load(at("threads.nnm"), NULL));
    nn_model_free(m);
    assert_int_equal(count_named(tu_tmpdir(), "threads.nnm.nnm-tmp."), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode_kept),
        cmocka_unit_test(test_symlinks_followed),
        cmocka_unit_test(test_non_regular_refused),
        cmocka_unit_test(test_stale_temps_removed),
        cmocka_unit_test(test_live_saver_untouched),
        cmocka_unit_test(test_threads_same_path),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
