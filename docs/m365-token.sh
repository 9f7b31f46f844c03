#!/bin/sh
# An OAuth2 access token for SMTP AUTH (XOAUTH2) at smtp.office365.com, for utskick's
# [smtp] token_command. It asks the Microsoft identity platform for a token with the
# client-credentials flow (an app registration with the SMTP.SendAsApp application
# permission; README, "Microsoft 365", says how to set it up) and prints the answer as it
# comes, e.g.
#
#   {"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0..."}
#
# utskick reads access_token and expires_in from it, and runs this script again before
# the token's hour is over, so a mailing of many hours keeps logging in.
#
# Set in the environment (never in config.toml):
#   M365_TENANT_ID            the Directory (tenant) ID
#   M365_CLIENT_ID            the app registration's Application (client) ID
#   M365_CLIENT_SECRET        one of the app's client secrets, or
#   M365_CLIENT_SECRET_FILE   a file holding it (mode 0600)
#   M365_TOKEN_URL            optional: another token endpoint (a national cloud such as
#                             https://login.microsoftonline.us/TENANT/oauth2/v2.0/token)
#
# Needs curl. On an error the endpoint's JSON answer is printed and the script fails:
# utskick then says the command failed without showing its output; run the script by hand
# to read the error (AADSTS7000215: a wrong secret; AADSTS700016: a wrong client ID).
set -eu

: "${M365_TENANT_ID:?set M365_TENANT_ID to the Directory (tenant) ID}"
: "${M365_CLIENT_ID:?set M365_CLIENT_ID to the Application (client) ID}"
if [ -z "${M365_CLIENT_SECRET:-}" ] && [ -n "${M365_CLIENT_SECRET_FILE:-}" ]; then
  M365_CLIENT_SECRET=$(cat "$M365_CLIENT_SECRET_FILE")
fi
: "${M365_CLIENT_SECRET:?set M365_CLIENT_SECRET or M365_CLIENT_SECRET_FILE}"
url=${M365_TOKEN_URL:-https://login.microsoftonline.com/$M365_TENANT_ID/oauth2/v2.0/token}

# The secret reaches curl on its standard input, never on its command line (where `ps`
# would show it), and is form-encoded by curl.
printf '%s' "$M365_CLIENT_SECRET" | curl --silent --show-error --fail-with-body \
  --max-time 20 \
  --data-urlencode "client_id=$M365_CLIENT_ID" \
  --data-urlencode "scope=https://outlook.office365.com/.default" \
  --data-urlencode "grant_type=client_credentials" \
  --data-urlencode "client_secret@-" \
  "$url"
echo
