#ifndef PACHMIGRATE_CCURL_SHIMS_H
#define PACHMIGRATE_CCURL_SHIMS_H
#include <curl/curl.h>
#endif
