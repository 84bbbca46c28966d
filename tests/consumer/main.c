/* Uses the installed headers and library: version agreement and one real call of each kind. */
#include <math.h>
#include <stdio.h>

#include <pissa.h>

int main(void) {
    if (pissa_version_number() != PISSA_VERSION_NUMBER) {
        fprintf(stderr, "header %d, library %u\n", PISSA_VERSION_NUMBER, pissa_version_number());
        return 1;
    }
    float W[6] = {3, 0, 0, 0, 2, 0}, U[2], S[1], Vt[3]; /* (2, 3), top singular value 3 */
    if (pissa_svd_exact(W, 2, 3, 1, U, S, Vt) != PISSA_OK || fabsf(S[0] - 3.0f) > 1e-5f) {
        fprintf(stderr, "svd: %s\n", pissa_last_error());
        return 1;
    }
    pissa_tensor *t = NULL;
    int64_t shape[1] = {4};
    if (pissa_tensor_create(1, shape, &t) != PISSA_OK) return 1;
    pissa_tensor_free(t);
    printf("consumer ok: libpissa %s\n", pissa_version_string());
    return 0;
}
