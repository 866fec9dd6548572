/* Image-folder datasets: root/<class>/<file>.png|.jpg|.jpeg, decoded with
 * libpng (simplified API) or libjpeg(-turbo), chosen by the file's magic
 * bytes, converted to RGB or gray and resized bilinearly to a fixed size.
 * Built only with the `image_folder` meson feature; otherwise the entry
 * point returns NN_ERR_UNSUPPORTED. */
#include "data_internal.h"

#define FN "nn_dataset_from_image_folder"

#ifndef NN_HAVE_IMAGE_FOLDER

nn_dataset *nn_dataset_from_image_folder(const char *root, int64_t height, int64_t width,
                                         int channels) {
    (void)root, (void)height, (void)width, (void)channels;
    return NN__FAIL(NN_ERR_UNSUPPORTED, FN ": libnn was built without libpng/libjpeg "
                                           "(meson option image_folder)");
}

#else

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

/* Largest decoded image accepted (pixels): bounds memory on hostile files. */
#define MAX_PIXELS (1u << 26)

/* ------------------------------------------------------------- decoding */

typedef struct image {
    unsigned char *px; /* h * w * c interleaved, nn__malloc'ed */
    uint32_t w, h;
} image;

static nn_status decode_png(const char *path, int c, image *im) {
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path))
        return nn__err(NN_ERR_FORMAT, FN ": '%s' is not a readable PNG: %s", path, p.message);
    if ((uint64_t)p.width * p.height > MAX_PIXELS) {
        png_image_free(&p);
        return nn__err(NN_ERR_LIMIT, FN ": '%s' is %ux%u, more than %u pixels", path, p.width,
                       p.height, MAX_PIXELS);
    }
    p.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    im->w = p.width;
    im->h = p.height;
    im->px = nn__malloc(PNG_IMAGE_SIZE(p));
    if (!im->px) {
        png_image_free(&p);
        return NN_ERR_NOMEM;
    }
    if (!png_image_finish_read(&p, NULL, im->px, 0, NULL)) {
        nn__free(im->px);
        im->px = NULL;
        return nn__err(NN_ERR_FORMAT, FN ": '%s' is a corrupt PNG: %s", path, p.message);
    }
    return NN_OK;
}

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr ci) {
    jpeg_err *e = (jpeg_err *)ci->err;
    ci->err->format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_quiet(j_common_ptr ci) { (void)ci; } /* no stderr from a library */

/* The libjpeg part; *px is owned by the caller even on error. */
static nn_status jpeg_run(FILE *f, const char *path, int c, image *im, jpeg_err *je,
                          struct jpeg_decompress_struct *ci) {
    if (setjmp(je->jb))
        return nn__err(NN_ERR_FORMAT, FN ": '%s' is a corrupt JPEG: %s", path, je->msg);
    jpeg_create_decompress(ci);
    jpeg_stdio_src(ci, f);
    jpeg_read_header(ci, TRUE);
    ci->out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(ci);
    if ((uint64_t)ci->output_width * ci->output_height > MAX_PIXELS)
        return nn__err(NN_ERR_LIMIT, FN ": '%s' is %ux%u, more than %u pixels", path,
                       ci->output_width, ci->output_height, MAX_PIXELS);
    im->w = ci->output_width;
    im->h = ci->output_height;
    size_t stride = (size_t)im->w * (size_t)c;
    im->px = nn__malloc(stride * im->h);
    if (!im->px) return NN_ERR_NOMEM;
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW row = im->px + (size_t)ci->output_scanline * stride;
        jpeg_read_scanlines(ci, &row, 1);
    }
    jpeg_finish_decompress(ci);
    /* libjpeg pads truncated data with gray and only warns: treat as corrupt. */
    if (je->pub.num_warnings > 0) {
        je->pub.format_message((j_common_ptr)ci, je->msg);
        return nn__err(NN_ERR_FORMAT, FN ": '%s' is a corrupt JPEG: %s", path, je->msg);
    }
    return NN_OK;
}

static nn_status decode_jpeg(const char *path, int c, image *im) {
    FILE *f = fopen(path, "rb");
    if (!f) return nn__err(NN_ERR_IO, FN ": cannot open '%s': %s", path, strerror(errno));
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    memset(&ci, 0, sizeof ci);
    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.output_message = jpeg_quiet;
    im->px = NULL;
    nn_status st = jpeg_run(f, path, c, im, &je, &ci);
    jpeg_destroy_decompress(&ci);
    fclose(f);
    if (st) {
        nn__free(im->px);
        im->px = NULL;
    }
    return st;
}

static nn_status decode(const char *path, int c, image *im) {
    unsigned char m[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return nn__err(NN_ERR_IO, FN ": cannot open '%s': %s", path, strerror(errno));
    size_t got = fread(m, 1, sizeof m, f);
    fclose(f);
    if (got == 8 && !png_sig_cmp(m, 0, 8)) return decode_png(path, c, im);
    if (got >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) return decode_jpeg(path, c, im);
    return nn__err(NN_ERR_FORMAT, FN ": '%s' is neither PNG nor JPEG (magic bytes)", path);
}

/* Bilinear resize (half-pixel centres, like align_corners=False) of an
 * interleaved h x w x c image into planar dst [c, H, W]. */
static void resize_into(const image *im, int c, int64_t H, int64_t W, uint8_t *dst) {
    for (int64_t y = 0; y < H; y++) {
        double sy = ((double)y + 0.5) * im->h / (double)H - 0.5;
        if (sy < 0) sy = 0;
        int64_t y0 = (int64_t)sy, y1 = y0 + 1 < (int64_t)im->h ? y0 + 1 : y0;
        double fy = sy - (double)y0;
        for (int64_t x = 0; x < W; x++) {
            double sx = ((double)x + 0.5) * im->w / (double)W - 0.5;
            if (sx < 0) sx = 0;
            int64_t x0 = (int64_t)sx, x1 = x0 + 1 < (int64_t)im->w ? x0 + 1 : x0;
            double fx = sx - (double)x0;
            for (int k = 0; k < c; k++) {
                const unsigned char *p = im->px;
                size_t w = im->w;
                double a = p[((size_t)y0 * w + (size_t)x0) * (size_t)c + (size_t)k];
                double b = p[((size_t)y0 * w + (size_t)x1) * (size_t)c + (size_t)k];
                double d = p[((size_t)y1 * w + (size_t)x0) * (size_t)c + (size_t)k];
                double e = p[((size_t)y1 * w + (size_t)x1) * (size_t)c + (size_t)k];
                double v = (a * (1 - fx) + b * fx) * (1 - fy) + (d * (1 - fx) + e * fx) * fy;
                dst[((int64_t)k * H + y) * W + x] = (uint8_t)lround(v);
            }
        }
    }
}

/* ------------------------------------------------------------- listing */

typedef struct names {
    char **v;
    int64_t n, cap;
} names;

static void names_free(names *ns) {
    for (int64_t i = 0; i < ns->n; i++) nn__free(ns->v[i]);
    nn__free(ns->v);
    ns->v = NULL;
    ns->n = ns->cap = 0;
}

static nn_status names_push(names *ns, const char *s) {
    if (ns->n == ns->cap) {
        int64_t ncap = ns->cap ? ns->cap * 2 : 16;
        char **nv = nn__realloc(ns->v, sizeof(char *) * (size_t)ncap);
        if (!nv) return NN_ERR_NOMEM;
        ns->v = nv;
        ns->cap = ncap;
    }
    if (!(ns->v[ns->n] = nn__strdup(s))) return NN_ERR_NOMEM;
    ns->n++;
    return NN_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *s) {
    const char *dot = strrchr(s, '.');
    return dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Sorted entries of dir that are directories (want_dirs) or image files. */
static nn_status list_dir(const char *dir, bool want_dirs, names *out) {
    DIR *d = opendir(dir);
    if (!d)
        return nn__err(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO,
                       FN ": cannot open directory '%s': %s", dir, strerror(errno));
    nn_status st = NN_OK;
    struct dirent *e;
    char path[4096];
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            st = nn__err(NN_ERR_LIMIT, FN ": path '%s/%s' is too long", dir, e->d_name);
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        if (want_dirs ? S_ISDIR(sb.st_mode) : (S_ISREG(sb.st_mode) && is_image_name(e->d_name)))
            st = names_push(out, e->d_name);
    }
    closedir(d);
    if (!st && out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return st;
}

/* --------------------------------------------------------------- build */

typedef struct folder {
    names classes;
    names *files;   /* per class */
    int64_t nfiles; /* entries allocated in files */
    int64_t total;
} folder;

static void folder_free(folder *f) {
    if (f->files)
        for (int64_t i = 0; i < f->nfiles; i++) names_free(&f->files[i]);
    nn__free(f->files);
    names_free(&f->classes);
}

static nn_status scan(const char *root, folder *f) {
    nn_status st = list_dir(root, true, &f->classes);
    if (st) return st;
    if (f->classes.n == 0)
        return nn__err(NN_ERR_NOT_FOUND, FN ": no class subfolders in '%s'", root);
    f->files = nn__calloc((size_t)f->classes.n, sizeof(names));
    if (!f->files) return NN_ERR_NOMEM;
    f->nfiles = f->classes.n;
    char dir[4096];
    for (int64_t c = 0; c < f->classes.n; c++) {
        snprintf(dir, sizeof dir, "%s/%s", root, f->classes.v[c]);
        if ((st = list_dir(dir, false, &f->files[c]))) return st;
        f->total += f->files[c].n;
    }
    if (f->total == 0)
        return nn__err(NN_ERR_NOT_FOUND, FN ": no .png/.jpg images under '%s'", root);
    return NN_OK;
}

static nn_status load_all(const char *root, folder *f, int c, int64_t H, int64_t W, nn_tensor *x,
                          nn_tensor *y) {
    char path[4096];
    int64_t i = 0, plane = (int64_t)c * H * W;
    for (int64_t k = 0; k < f->classes.n; k++)
        for (int64_t j = 0; j < f->files[k].n; j++, i++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, f->classes.v[k], f->files[k].v[j]);
            image im = {0};
            nn_status st = decode(path, c, &im);
            if (st) return st;
            if (im.w == 0 || im.h == 0) {
                nn__free(im.px);
                return nn__err(NN_ERR_FORMAT, FN ": '%s' has no pixels", path);
            }
            resize_into(&im, c, H, W, nn__u8(x) + i * plane);
            nn__free(im.px);
            nn__i64(y)[i] = k;
        }
    return NN_OK;
}

nn_dataset *nn_dataset_from_image_folder(const char *root, int64_t height, int64_t width,
                                         int channels) {
    if (!nn__check_ptr(root, FN, "root")) return NULL;
    if (channels != 1 && channels != 3)
        return NN__FAIL(NN_ERR_INVALID, FN ": channels = %d, expected 1 (gray) or 3 (RGB)",
                        channels);
    if (height < 1 || width < 1 || height > 65536 || width > 65536)
        return NN__FAIL(NN_ERR_INVALID, FN ": size %lldx%lld outside [1, 65536]", (long long)height,
                        (long long)width);
    folder f = {0};
    nn_tensor *x = NULL, *y = NULL;
    nn_dataset *ds = NULL;
    nn_status st = scan(root, &f);
    if (st) goto done;
    int64_t shape[4] = {f.total, channels, height, width};
    x = nn__tensor_new(NN_DTYPE_U8, shape, 4);
    y = nn__tensor_new(NN_DTYPE_I64, &f.total, 1);
    if (!x || !y || load_all(root, &f, channels, height, width, x, y)) goto done;
    ds = nn__dataset_new(x, y, FN);
    x = y = NULL;
    if (!ds) goto done;
    ds->num_classes = f.classes.n; /* a class folder may be empty */
    ds->class_names = f.classes.v; /* hand the names over */
    f.classes.v = NULL;
    f.classes.n = 0;
done:
    folder_free(&f);
    nn__tensor_release(x);
    nn__tensor_release(y);
    return ds;
}

#endif
