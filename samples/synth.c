/* synth: write a synthetic test picture as binary PGM (1 component) or PPM
 * (3 components).
 *
 * The picture has what a wavelet coder and a region-of-interest test need:
 * smooth gradients (low frequencies), a grid of lines and rings (edges at
 * every scale), and deterministic pseudo-random noise (incompressible
 * detail), so that every resolution and quality layer carries data and a
 * wrong precinct shows up as wrong pixels.
 *
 * usage: synth WIDTH HEIGHT COMPONENTS(1|3) OUT
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long rng_state = 12345;

static unsigned noise(void)
{
    rng_state = rng_state * 1103515245ul + 12345ul;
    return (unsigned)((rng_state >> 16) & 0x1f);
}

static unsigned char clamp(double v)
{
    if (v < 0) {
        return 0;
    }
    if (v > 255) {
        return 255;
    }
    return (unsigned char)v;
}

int main(int argc, char **argv)
{
    long w, h, nc, x, y;
    FILE *out;

    if (argc != 5) {
        fprintf(stderr, "usage: synth WIDTH HEIGHT COMPONENTS(1|3) OUT\n");
        return 2;
    }
    w = strtol(argv[1], NULL, 10);
    h = strtol(argv[2], NULL, 10);
    nc = strtol(argv[3], NULL, 10);
    if (w < 1 || h < 1 || w > 65536 || h > 65536 || (nc != 1 && nc != 3)) {
        fprintf(stderr, "synth: bad size or component count\n");
        return 2;
    }
    out = fopen(argv[4], "wb");
    if (out == NULL) {
        perror(argv[4]);
        return 1;
    }
    fprintf(out, "P%c\n%ld %ld\n255\n", nc == 1 ? '5' : '6', w, h);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            double cx = x - w / 2.0, cy = y - h / 2.0;
            double ring = 40.0 * sin(sqrt(cx * cx + cy * cy) / 9.0);
            double grid = ((x % 64) < 2 || (y % 48) < 2) ? 70.0 : 0.0;
            double base = 255.0 * x / w;
            unsigned char px[3];

            px[0] = clamp(base * 0.8 + ring + grid + noise());
            px[1] = clamp(255.0 * y / h * 0.8 + ring - grid + noise());
            px[2] = clamp(128.0 + 100.0 * sin(x / 37.0) * cos(y / 23.0) + grid + noise());
            if (fwrite(px, 1, (size_t)nc, out) != (size_t)nc) {
                perror("synth: write");
                fclose(out);
                return 1;
            }
        }
    }
    if (fclose(out) != 0) {
        perror("synth: close");
        return 1;
    }
    return 0;
}
