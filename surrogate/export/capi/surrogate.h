/* surrogate.h: call a surrogate exported by `surrogate export` from C or Fortran.
 *
 * Link with -lsurrogate (libsurrogate.so, built by `surrogate export --build-c` or
 * `surrogate.export.build_c_library`). The library embeds the Python interpreter it was
 * built with, which runs the serialized `jax.export` artifact; no Python is needed in the
 * calling program. Arrays are flat float32 buffers in C (row-major) order of the shape in
 * the export's metadata.json: a Fortran array x(n, channels) has the memory layout of the
 * C shape (channels, n).
 *
 * Every int function returns SURROGATE_OK (0) on success and one of the codes below on
 * failure, after which surrogate_last_error() describes what went wrong. Errors never
 * abort the calling program. Calls are
 * serialised (one model per process); not for concurrent use from several threads.
 */
#ifndef SURROGATE_H
#define SURROGATE_H

#ifdef __cplusplus
extern "C" {
#endif

#define SURROGATE_OK 0
#define SURROGATE_ERR_NOT_INITIALIZED 1 /* surrogate_eval before a successful init */
#define SURROGATE_ERR_SIZE 2            /* n_in or n_out differs from the model's */
#define SURROGATE_ERR_LOAD 3            /* export folder missing, unreadable or invalid */
#define SURROGATE_ERR_EVAL 4            /* the model failed or produced NaN/inf */
#define SURROGATE_ERR_PYTHON 5          /* the embedded Python or JAX could not start */

/* Load the export in folder `dir` (metadata.json + model.jaxexport). Replaces any model
 * loaded before. */
int surrogate_init(const char *dir);

/* out[0:n_out] = model(in[0:n_in]); n_in and n_out must equal the sizes of the export. */
int surrogate_eval(const float *in, long n_in, float *out, long n_out);

/* Forget the model (the interpreter stays for the life of the process). */
void surrogate_finalize(void);

/* Why the last call failed, NUL-terminated ("" after a successful call); valid until the
 * next call. */
const char *surrogate_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* SURROGATE_H */
