/* Replays every file of the given directories through the fuzz target with a
 * plain main(), so the committed corpus runs in every build (suite "fuzz").
 *   replay DIR...            feed each file to LLVMFuzzerTestOneInput
 *   replay --seeds DIR       write valid seed files made by the library */
#include "nn.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void nn_fuzz_teardown(void);

static int replay_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t *buf = NULL;
        size_t n = 0, cap = 0, k;
        do {
            if (n == cap) buf = realloc(buf, cap = cap ? cap * 2 : 65536);
            k = fread(buf + n, 1, cap - n, f);
            n += k;
        } while (k > 0);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        (*count)++;
    }
    closedir(d);
    return 0;
}

static int write_seeds(const char *dir) {
    char path[4096];
    nn_generator_seed(NULL, 1);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(2, 3, true));
    nn_sequential_append(net, nn_relu_new());
    nn_meta *meta = nn_meta_new();
    const char *cls[] = {"a", "b", "c"};
    const double mean[] = {0.5, 0.25};
    nn_meta_set_string(meta, "description", "seed");
    nn_meta_set_array(meta, "mean", mean, 2);
    nn_meta_set_strings(meta, "classes", cls, 3);
    nn_meta_set_number(meta, "version", 1);
    nn_io_options *o = nn_io_options_new();
    int rc = 0;
    for (int level = 0; level <= 9; level += 9) {
        nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level);
        snprintf(path, sizeof path, "%s/seed_model_l%d.nnm", dir, level);
        rc |= nn_model_save(net, path, meta, o);
    }
    nn_tensor *p[2] = {nn_module_parameter(net, 0, NULL), nn_module_parameter(net, 1, NULL)};
    nn_optim *opt = nn_adam(p, 2, 1e-3);
    nn_io_options_set_training(o, opt, NULL, NULL, 2, 10);
    snprintf(path, sizeof path, "%s/seed_checkpoint.nnm", dir);
    rc |= nn_model_save(net, path, NULL, o);
    /* a compressible model, so the inflate path has a seed */
    nn_module *flat = nn_sequential_new();
    nn_sequential_append(flat, nn_linear_new(16, 16, true));
    nn_tensor_fill(nn_module_parameter(flat, 0, NULL), 0.5);
    nn_io_options_set_training(o, NULL, NULL, NULL, 0, 0);
    snprintf(path, sizeof path, "%s/seed_compressed.nnm", dir);
    rc |= nn_model_save(flat, path, NULL, o);
    nn_module_free(flat);
    /* aligned files (FORMAT.md 11): a model the mapped loader takes, and weights */
    nn_io_options_set(o, NN_IO_OPTION_ALIGNED, 1);
    snprintf(path, sizeof path, "%s/seed_aligned.nnm", dir);
    rc |= nn_model_save(net, path, meta, o);
    nn_statedict *asd = nn_module_state_dict(net);
    snprintf(path, sizeof path, "%s/seed_aligned_weights.nnm", dir);
    rc |= nn_statedict_save(asd, path, o);
    nn_statedict_free(asd);
    nn_io_options_set(o, NN_IO_OPTION_ALIGNED, 0);
    nn_statedict *sd = nn_module_state_dict(net);
    snprintf(path, sizeof path, "%s/seed_weights.nnm", dir);
    rc |= nn_statedict_save(sd, path, NULL);
    nn_statedict_free(sd);
    nn_optim_free(opt);
    nn_io_options_free(o);
    nn_meta_free(meta);
    nn_module_free(net);
    if (rc) fprintf(stderr, "%s\n", nn_last_error());
    return rc != 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) return write_seeds(argv[2]);
    int count = 0;
    for (int i = 1; i < argc; i++)
        if (replay_dir(argv[i], &count)) return 1;
    nn_fuzz_teardown();
    printf("replayed %d files\n", count);
    return count > 0 ? 0 : 1;
}
