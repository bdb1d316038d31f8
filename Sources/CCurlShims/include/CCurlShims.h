#ifndef PACHMIGRATE_CCURL_SHIMS_H
#define PACHMIGRATE_CCURL_SHIMS_H
#include <curl/curl.h>
#include <stddef.h>

// Swift cannot call C variadic functions, so every curl_easy_setopt/getinfo flavour the
// gateway client needs gets a typed, non-variadic wrapper here.

typedef size_t (*pm_curl_data_callback)(char *data, size_t size, size_t nmemb, void *userdata);

CURLcode pm_curl_global_init(void);

CURLcode pm_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode pm_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode pm_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode pm_curl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
CURLcode pm_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);
CURLcode pm_curl_setopt_write_callback(CURL *handle, pm_curl_data_callback callback);

CURLcode pm_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode pm_curl_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value);

#endif
