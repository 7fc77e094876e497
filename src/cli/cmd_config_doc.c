/* deft config-doc: print the Markdown reference of every configuration key,
 * the text of docs/config.md, from the key tables in src/config/keys.c. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"

int cmd_config_doc(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: deft config-doc > docs/config.md\n\n"
               "Prints the reference of every configuration key (Markdown).\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "deft config-doc: takes no arguments, got '%s'\n", argv[1]);
        return 2;
    }
    cfg_write_reference(stdout);
    return fflush(stdout) ? 1 : 0;
}
