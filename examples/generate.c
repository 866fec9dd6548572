/* generate: the embedding application. Load a GPT saved by char_gpt (or any
 * byte-level GPT model file), then continue a prompt, on N threads at once
 * that share the one loaded model, each with its own session (KV cache) and
 * seed. With one thread the text streams as it is made.
 *
 * Usage: generate MODEL "prompt" [--threads N] [--tokens N] [--temperature T]
 *            [--top-k K] [--top-p P] [--seed S]
 *
 * The PyTorch version of one session:
 *   model.eval(); idx = encode(prompt)
 *   for _ in range(tokens):
 *       logits = model(idx)[:, -1, :] / temperature     # (recomputes everything)
 *       idx = cat(idx, multinomial(softmax(top_k(logits)), 1))
 */
#include <nn.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const nn_model *model;
    const int64_t *prompt;
    int64_t nprompt;
    nn_sampling opts;
    int64_t *out, n;
    bool stream;
    nn_status st;
    char err[256];
    double seconds;
} job;

static int stream_token(int64_t tok, void *user) {
    (void)user;
    putchar((int)tok);
    fflush(stdout);
    return 0;
}

static void *run(void *p) {
    job *j = p;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    nn_session *s = nn_session_new(j->model, &j->opts);
    j->st = s ? nn_session_generate(s, j->prompt, j->nprompt, NULL, 0, j->out, j->opts.max_tokens,
                                    &j->n, j->stream ? stream_token : NULL, NULL)
              : nn_last_status();
    if (j->st) snprintf(j->err, sizeof j->err, "%s", nn_last_error());
    nn_session_free(s);
    clock_gettime(CLOCK_MONOTONIC, &b);
    j->seconds = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL \"prompt\" [--threads N] [--tokens N] [--temperature T] "
                        "[--top-k K] [--top-p P] [--seed S]\n", argv[0]);
        return 2;
    }
    int threads = 1;
    nn_sampling opts;
    nn_sampling_init(&opts);
    opts.temperature = 0.8;
    opts.top_k = 40;
    opts.max_tokens = 200;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--tokens")) opts.max_tokens = atoll(v);
        else if (!strcmp(a, "--temperature")) opts.temperature = atof(v);
        else if (!strcmp(a, "--top-k")) opts.top_k = atoi(v);
        else if (!strcmp(a, "--top-p")) opts.top_p = atof(v);
        else if (!strcmp(a, "--seed")) opts.seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "generate: unknown option %s\n", a);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || opts.max_tokens < 1) {
        fprintf(stderr, "generate: --threads must be 1..64 and --tokens >= 1\n");
        return 2;
    }
    nn_model *model = nn_model_load(argv[1], NULL);
    if (!model) {
        fprintf(stderr, "generate: %s\n", nn_last_error());
        return 1;
    }
    /* the prompt as byte tokens */
    const char *text = argv[2];
    int64_t n = nn_byte_encode(text, strlen(text), NULL, 0);
    int64_t *prompt = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    nn_byte_encode(text, strlen(text), prompt, n);
    /* one session per thread, all on the one model */
    job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){.model = model, .prompt = prompt, .nprompt = n, .opts = opts,
                        .stream = threads == 1};
        jobs[i].opts.seed = opts.seed + (uint64_t)i;
        jobs[i].out = malloc(sizeof(int64_t) * (size_t)opts.max_tokens);
    }
    if (threads == 1) fputs(text, stdout);
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, run, &jobs[i]);
    int rc = 0;
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < threads; i++) {
        job *j = &jobs[i];
        if (j->st) {
            fprintf(stderr, "generate: session %d: %s\n", i, j->err);
            rc = 1;
        } else if (threads > 1) {
            char *buf = malloc((size_t)j->n + 1);
            nn_byte_decode(j->out, j->n, buf, j->n);
            buf[j->n] = '\0';
            printf("=== session %d (seed %llu) ===\n%s%s\n", i,
                   (unsigned long long)j->opts.seed, text, buf);
            free(buf);
        }
        fprintf(stderr, "session %d: %lld tokens in %.3f s (%.1f tokens/s)\n", i,
                (long long)j->n, j->seconds, (double)j->n / j->seconds);
        free(j->out);
    }
    if (threads == 1) putchar('\n');
    free(jobs);
    free(th);
    free(prompt);
    nn_model_free(model);
    return rc;
}
