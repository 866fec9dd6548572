/* Whole files: assemble sections and deliver them to a path (the atomic
 * save), a buffer or a callback (reading is load.c's one-pass reader). The
 * system calls of the save go through nn__io_sys_ops so tests can inject a
 * failure at each step. */
#include "io_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int sys_open(const char *path, int flags, int mode) { return open(path, flags, mode); }
static int sys_fsync(int fd) { return fsync(fd); }

nn__io_sys nn__io_sys_ops = {sys_open, write, sys_fsync, close, rename, unlink};

void nn__io_sys_reset(void) {
    nn__io_sys_ops.open = sys_open;
    nn__io_sys_ops.write = write;
    nn__io_sys_ops.fsync = sys_fsync;
    nn__io_sys_ops.close = close;
    nn__io_sys_ops.rename = rename;
    nn__io_sys_ops.unlink = unlink;
}

/* ------------------------------------------------------- atomic save
 *
 * The file is written to "<name>.nnm-tmp.<pid>.<16 hex digits>" beside the
 * final target, synced, given the target's permission bits and renamed over
 * it; then the directory is synced. A symlinked path is followed to its
 * final target (the link stays a link; the file it names is replaced).
 * Each temp file carries an exclusive flock(2) from creation to rename, and
 * locks die with their process (whatever its pid namespace or host), so a
 * temp file whose lock nobody holds was left by a save that died: the next
 * save to the same target removes it. Where the file system has no flock,
 * a temp file is stale when its pid no longer exists. */

#define TMP_TAG ".nnm-tmp."
#define MAX_LINKS 40 /* like the kernel's limit on nested links */

/* The contents of symlink path (st_size: lstat's size, 0 for /proc links). */
static char *read_link(const char *path, off_t st_size, const char *fn) {
    size_t cap = st_size > 0 && st_size < (1 << 20) ? (size_t)st_size + 1 : 256;
    for (;;) {
        char *buf = nn__malloc(cap);
        if (!buf) return NULL;
        ssize_t n = readlink(path, buf, cap);
        if (n >= 0 && (size_t)n < cap) {
            buf[n] = '\0';
            return buf;
        }
        nn__free(buf);
        if (n < 0) {
            nn__err(NN_ERR_IO, "%s: cannot read the link '%s': %s", fn, path, strerror(errno));
            return NULL;
        }
        if (cap >= (1 << 20)) {
            nn__err(NN_ERR_IO, "%s: the link '%s' is too long", fn, path);
            return NULL;
        }
        cap *= 2; /* the link changed meanwhile */
    }
}

/* link resolved against the directory of the link at path, as a new string. */
static char *beside(const char *path, const char *link) {
    const char *slash = strrchr(path, '/');
    if (link[0] == '/' || !slash) return nn__strdup(link);
    size_t dlen = (size_t)(slash - path) + 1, llen = strlen(link) + 1;
    char *out = nn__malloc(dlen + llen);
    if (out) {
        memcpy(out, path, dlen);
        memcpy(out + dlen, link, llen);
    }
    return out;
}

/* path with its symlinks followed to the final target (which need not
 * exist), as a new string; NULL + error on a loop or a failure. */
static char *follow_links(const char *path, const char *fn) {
    char *cur = nn__strdup(path);
    for (int hops = 0; cur; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        if (hops == MAX_LINKS) {
            nn__err(NN_ERR_IO, "%s: more than %d symbolic links from '%s' (a loop?)", fn,
                    MAX_LINKS, path);
            break;
        }
        char *link = read_link(cur, st.st_size, fn);
        char *next = link ? beside(cur, link) : NULL;
        nn__free(link);
        nn__free(cur);
        cur = next;
    }
    nn__free(cur);
    return NULL;
}

/* The directory part of path ("." or "/" when that is all), as a new string. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return nn__strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = nn__malloc(n + 1);
    if (dir) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/* Whether name is "<base>.nnm-tmp.<pid>.<16 hex>"; *pid receives the pid. */
static bool is_temp_name(const char *name, const char *base, long *pid) {
    size_t blen = strlen(base), tlen = strlen(TMP_TAG);
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, TMP_TAG, tlen) != 0) return false;
    const char *p = name + blen + tlen;
    long v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++) v = v * 10 + (*p - '0');
    if (digits == 0 || *p++ != '.' || v <= 0 || v > INT_MAX) return false;
    for (digits = 0; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++) digits++;
    *pid = v;
    return digits == 16 && *p == '\0';
}

/* Remove the temp file name in directory dfd if the save that made it died
 * (see the comment above). The unlink happens only if name still is the
 * inode whose lock was tested. */
static void remove_if_stale(int dfd, const char *name, long pid) {
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat a, b;
    bool stale = false;
    if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode)) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0)
            stale = true; /* no live saver holds it */
        else if (errno != EWOULDBLOCK && errno != EINTR)
            stale = kill((pid_t)pid, 0) != 0 && errno == ESRCH; /* no flock here */
    }
    if (stale && fstatat(dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        unlinkat(dfd, name, 0);
    close(fd);
}

/* Best effort: remove stale temp files of saves to dir/base. */
static void remove_stale_temps(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    long pid;
    while ((e = readdir(d)))
        if (is_temp_name(e->d_name, base, &pid)) remove_if_stale(dirfd(d), e->d_name, pid);
    closedir(d);
}

/* 64 bits that differ between calls, threads and processes (names only:
 * O_EXCL, not the randomness, is what makes the file ours). */
static unsigned long long temp_suffix(void) {
    static _Atomic uint64_t counter = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u;
    z ^= ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u; /* splitmix64's finaliser */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (unsigned long long)(z ^ (z >> 31));
}

/* Lock the new temp file fd and check that tmp still names it (a cleaner
 * may have removed it between open and flock). Returns 1 if fd is ours and
 * locked (or the file system has no flock), 0 if the name was lost. */
static int claim_temp(int fd, const char *tmp) {
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (rc != 0) return 1; /* no flock here: cleaners fall back to the pid */
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(tmp, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* Create and lock a temp file for dir/base (mode before umask). Returns its
 * descriptor and *tmp_out (new string), or -1 + error. */
static int create_temp(const char *dir, const char *base, int mode, char **tmp_out,
                       const char *fn) {
    size_t cap = strlen(dir) + strlen(base) + 64;
    char *tmp = nn__malloc(cap);
    if (!tmp) return -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, cap, "%s/%s" TMP_TAG "%ld.%016llx", dir, base, (long)getpid(),
                 temp_suffix());
        int fd = nn__io_sys_ops.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            nn__err(NN_ERR_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
            nn__free(tmp);
            return -1;
        }
        if (claim_temp(fd, tmp)) {
            *tmp_out = tmp;
            return fd;
        }
        close(fd); /* removed by a cleaner before we locked it: take another name */
    }
    nn__err(NN_ERR_IO, "%s: cannot create a temporary file in '%s'", fn, dir);
    nn__free(tmp);
    return -1;
}

static nn_status write_all(int fd, const uint8_t *p, size_t n, const char *fn, const char *tmp) {
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t k = nn__io_sys_ops.write(fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return nn__err(NN_ERR_IO, "%s: writing '%s' failed: %s", fn, tmp,
                           k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return NN_OK;
}

/* Give the temp file fd the permission bits (and, where allowed, the owner
 * and group) of the file it replaces, described by t. If the group cannot be
 * kept, the group bits are dropped: another group never gains access. */
static nn_status match_target(int fd, const struct stat *t, const char *tmp, const char *fn) {
    mode_t mode = t->st_mode & 0777;
    struct stat cur;
    if (fstat(fd, &cur) != 0)
        return nn__err(NN_ERR_IO, "%s: cannot stat '%s': %s", fn, tmp, strerror(errno));
    if ((cur.st_uid != t->st_uid || cur.st_gid != t->st_gid) &&
        fchown(fd, t->st_uid, t->st_gid) != 0 && fchown(fd, (uid_t)-1, t->st_gid) != 0)
        mode &= ~(mode_t)070;
    if (fchmod(fd, mode) == 0) return NN_OK;
    int e = errno;
    if (fstat(fd, &cur) == 0 && (cur.st_mode & 0777) == mode) return NN_OK; /* e.g. vfat */
    return nn__err(NN_ERR_IO, "%s: cannot give '%s' mode %03o: %s", fn, tmp, (unsigned)mode,
                   strerror(e));
}

/* fsync directory dir so the rename itself is durable. */
static nn_status sync_dir(const char *dir, const char *fn) {
    int fd = nn__io_sys_ops.open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY, 0);
    if (fd < 0)
        return nn__err(NN_ERR_IO, "%s: cannot open directory '%s': %s", fn, dir, strerror(errno));
    nn_status st = NN_OK;
    if (nn__io_sys_ops.fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        st = nn__err(NN_ERR_IO, "%s: fsync of directory '%s' failed: %s", fn, dir, strerror(errno));
    nn__io_sys_ops.close(fd);
    return st;
}

/* Write data to target (no symlink; t its stat if exists) through a temp
 * file in dir, then rename. On failure the target is untouched and the temp
 * file removed. */
static nn_status replace_file(const char *target, const char *dir, const struct stat *t,
                              const uint8_t *data, size_t size, const char *fn) {
    const char *slash = strrchr(target, '/');
    const char *base = slash ? slash + 1 : target;
    remove_stale_temps(dir, base);
    char *tmp = NULL;
    /* A new file gets 0666 minus the umask, like fopen; over an existing one,
     * the temp file stays private until it has the target's bits. */
    int fd = create_temp(dir, base, t ? 0600 : 0666, &tmp, fn);
    if (fd < 0) return nn_last_status();
    /* A second descriptor keeps the lock from close to rename. */
    int lockfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    nn_status st = NN_OK;
    if (lockfd < 0)
        st = nn__err(NN_ERR_IO, "%s: cannot duplicate a descriptor: %s", fn, strerror(errno));
    if (!st) st = write_all(fd, data, size, fn, tmp);
    if (!st && t) st = match_target(fd, t, tmp, fn);
    if (!st && nn__io_sys_ops.fsync(fd) != 0)
        st = nn__err(NN_ERR_IO, "%s: fsync of '%s' failed: %s", fn, tmp, strerror(errno));
    if (nn__io_sys_ops.close(fd) != 0 && !st) /* close can report a deferred write error */
        st = nn__err(NN_ERR_IO, "%s: closing '%s' failed: %s", fn, tmp, strerror(errno));
    if (!st && nn__io_sys_ops.rename(tmp, target) != 0)
        st = nn__err(NN_ERR_IO, "%s: renaming '%s' to '%s' failed: %s", fn, tmp, target,
                     strerror(errno));
    if (st) nn__io_sys_ops.unlink(tmp); /* the old file, if any, was never touched */
    if (lockfd >= 0) close(lockfd);
    nn__free(tmp);
    return st;
}

nn_status nn__io_write_path(const char *path, const uint8_t *data, size_t size, const char *fn) {
    if (!nn__check_ptr(path, fn, "path")) return nn_last_status();
    if (!*path) return nn__err(NN_ERR_INVALID, "%s: path is empty", fn);
    char *target = follow_links(path, fn);
    if (!target) return nn_last_status();
    const char *slash = strrchr(target, '/');
    char *dir = NULL;
    struct stat t;
    bool exists = stat(target, &t) == 0;
    nn_status st = NN_OK;
    if (!(slash ? slash[1] : target[0]))
        st = nn__err(NN_ERR_INVALID, "%s: '%s' names a directory, not a file", fn, target);
    else if (exists && !S_ISREG(t.st_mode))
        st = nn__err(NN_ERR_IO, "%s: '%s' exists and is not a regular file", fn, target);
    else if (!(dir = dir_of(target)))
        st = nn_last_status();
    if (!st) st = replace_file(target, dir, exists ? &t : NULL, data, size, fn);
    /* The new file is in place; a failed directory sync only means the
     * rename may not survive a power cut, which the caller should know. */
    if (!st) st = sync_dir(dir, fn);
    nn__free(target);
    nn__free(dir);
    return st;
}

/* ---------------------------------------------------- files in memory */

nn_status nn__io_deliver(const nn__io_dst *dst, uint8_t *data, size_t size, const char *fn) {
    nn_status st;
    if (dst->path) {
        st = nn__io_write_path(dst->path, data, size, fn);
    } else if (dst->out_data) {
        *dst->out_data = data; /* ownership moves to the caller */
        *dst->out_size = size;
        return NN_OK;
    } else {
        st = nn__io_write_stream(dst->write, dst->user, data, size, fn);
    }
    nn__free(data);
    return st;
}

nn_status nn__io_save(const nn__io_parts *parts, int level, const nn__io_dst *dst, const char *fn) {
    nn__filew f;
    nn__filew_begin(&f);
    nn__wbuf meta = {0}, tensors = {0};
    nn__meta_encode(parts->meta, &meta);
    nn__filew_section(&f, NN__SEC_META, 0, &meta);
    if (parts->module) nn__filew_section(&f, NN__SEC_MODULE, 0, parts->module);
    /* Aligned: the tensor payload starts after this section's 24-byte header. */
    if (level < 0) f.flags |= NN__IO_FLAG_ALIGNED;
    nn_status st = nn__tensors_encode_ex(parts->tensors, level < 0 ? 0 : level, &tensors,
                                         level < 0 ? (int64_t)f.w.len + NN__IO_SECTION_HEADER_SIZE : -1,
                                         fn);
    if (st && !f.w.err) f.w.err = st;
    nn__filew_section(&f, NN__SEC_TENSORS, 0, &tensors);
    if (parts->training) nn__filew_section(&f, NN__SEC_TRAINING, 0, parts->training);
    uint8_t *data;
    size_t size;
    st = nn__filew_finish(&f, &data, &size, fn);
    if (st) return st;
    if (parts->seal && (st = nn__seal(parts->seal, &data, &size, fn))) {
        nn__free(data);
        return st;
    }
    return nn__io_deliver(dst, data, size, fn);
}
