# The form the manual advises since 2.4.47, an http:// worker with upgrade=websocket:
# with ProxyWebsocketUpgradeHttp On this module tunnels it; Off (stock), mod_proxy_http does.
# Either way the client sees the same WebSocket.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/lib";
use Apache::Test qw(-withtestmore);
use WstTest;

plan tests => 2 * 3 + 2, need_module qw(proxy proxy_http proxy_wstunnel);

for my $mode (qw(up_ours up_stock)) {
    my ($c, $err) = ws_open(url_for($mode, "/up/whoami/$mode"));
    ok($c, "$mode: ProxyPass http:// upgrade=websocket opens") or diag($err);
    is(ws_next($c), 'backend one', "$mode: it reaches the backend");
    is(ws_echo($c, "hello $mode"), "hello $mode", "$mode: it echoes");
    $c->close;
}

my $log = error_log();
like($log, qr{WST01025: tunnelling the upgrade to (?i:websocket) for http://\S+/whoami/up_ours}, 'On: this module tunnels it');
unlike($log, qr{WST01025[^\n]*up_stock}, 'Off: mod_proxy_http tunnels it');
