/* mod_jpip: the zero-install viewer (HTML beside JPIP at the same URLs).
 *
 * A GET at a JPIP location that carries no JPIP field and whose Accept
 * header prefers text/html (a browser following a link) is answered with
 * HTML: for a directory below JPIPRoot an index of the images and
 * sub-directories in it, for an image a viewer page (OpenSeadragon fed by
 * the IIIF endpoint named by JPIPViewerIIIF, the image's JP2 metadata in a
 * side panel). Every other request, and every request once JPIPViewer is
 * Off, is JPIP as before. The page's scripts, styles and OpenSeadragon's
 * images are served under the reserved path "/.viewer/" of the location
 * from the assets directory (JPIPViewerAssets), with long cache lifetimes;
 * "/.viewer/original/PATH" sends an image's file when JPIPViewerDownload
 * allows it. See docs/viewer.md.
 */
#ifndef JPIP_VIEWER_H
#define JPIP_VIEWER_H

#include <httpd.h>
#include <http_config.h>

/* The viewer's part of the per-location configuration (a member of
 * jpip_dir_conf_t). Every field has an unset value. */
typedef struct jpip_viewer_conf_t {
    int html;           /* JPIPViewer: 0 Off, 1 On; -1 = unset (On) */
    const char *iiif;   /* JPIPViewerIIIF: URL path of the IIIF endpoint, "" = none;
                           NULL = unset (none) */
    int download;       /* JPIPViewerDownload: 0 Off, 1 On; -1 = unset (Off) */
    const char *assets; /* JPIPViewerAssets: directory; NULL = unset (the installed one) */
} jpip_viewer_conf_t;

/* The reserved path segment below a JPIP location. */
#define JPIP_VIEWER_RESERVED ".viewer"

void jpip_viewer_conf_init(jpip_viewer_conf_t *c);
void jpip_viewer_conf_merge(jpip_viewer_conf_t *c, const jpip_viewer_conf_t *base,
                            const jpip_viewer_conf_t *add);

const char *jpip_viewer_cmd_flag(cmd_parms *cmd, void *dconf, int on);
const char *jpip_viewer_cmd_take1(cmd_parms *cmd, void *dconf, const char *arg);

/* The viewer's directives, for the module's command table. */
#define JPIP_VIEWER_CMDS                                                                           \
    AP_INIT_FLAG("JPIPViewer", jpip_viewer_cmd_flag, (void *)"html", ACCESS_CONF,                  \
                 "On (default) to answer browsers with the HTML index and viewer, Off for JPIP "   \
                 "only"),                                                                          \
        AP_INIT_FLAG("JPIPViewerDownload", jpip_viewer_cmd_flag, (void *)"download", ACCESS_CONF,  \
                     "On to offer the original file for download (default Off)"),                  \
        AP_INIT_TAKE1("JPIPViewerIIIF", jpip_viewer_cmd_take1, (void *)"iiif", ACCESS_CONF,        \
                      "URL path of the IIIF Image API location over the same JPIPRoot, or none"),  \
        AP_INIT_TAKE1("JPIPViewerAssets", jpip_viewer_cmd_take1, (void *)"assets", ACCESS_CONF,    \
                      "Directory of the viewer's scripts, styles and images (default: the "        \
                      "installed one)")

/* Answer r with HTML or a viewer asset when it is for the viewer; DECLINED
 * when it is a JPIP request (the caller goes on as before). Called by the
 * jpip handler once the location is known to have a JPIPRoot. */
int jpip_viewer_handle(request_rec *r);

#endif /* JPIP_VIEWER_H */
