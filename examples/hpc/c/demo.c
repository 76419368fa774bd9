/* Evaluate an exported surrogate on a sine wave and print the result, one value a line.
 *
 *   demo EXPORT_DIR N_IN N_OUT
 *
 * Build: cc demo.c -I DIR -L DIR -lsurrogate -Wl,-rpath,DIR -lm   (DIR holds libsurrogate.so)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "surrogate.h"

static const double pi = 3.14159265358979323846;

static int fail(const char *what, int code)
{
    fprintf(stderr, "%s failed (code %d): %s\n", what, code, surrogate_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    long n_in, n_out, i;
    float *x, *y;
    int code;

    if (argc != 4) {
        fprintf(stderr, "usage: %s EXPORT_DIR N_IN N_OUT\n", argv[0]);
        return 2;
    }
    n_in = atol(argv[2]);
    n_out = atol(argv[3]);
    x = malloc(sizeof(float) * (size_t)(n_in > 0 ? n_in : 1));
    y = malloc(sizeof(float) * (size_t)(n_out > 0 ? n_out : 1));
    if (x == NULL || y == NULL)
        return 2;
    for (i = 0; i < n_in; i++) /* x_i = sin(2 pi i / n_in), in double, stored as float */
        x[i] = (float)sin(2.0 * pi * (double)i / (double)n_in);

    code = surrogate_init(argv[1]);
    if (code != SURROGATE_OK)
        return fail("surrogate_init", code);
    code = surrogate_eval(x, n_in, y, n_out);
    if (code != SURROGATE_OK)
        return fail("surrogate_eval", code);
    for (i = 0; i < n_out; i++)
        printf("%.9e\n", y[i]);
    surrogate_finalize();
    free(x);
    free(y);
    return 0;
}
