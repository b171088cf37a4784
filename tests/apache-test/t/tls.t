# wss:// clients: TLS front end (mod_ssl) to ws:// and wss:// backends, big messages.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/lib";
use Apache::Test qw(-withtestmore);
use WstTest;

plan tests => 16, need_module qw(proxy proxy_wstunnel ssl);

my $big = join '', map { chr($_ % 256) } 0 .. (1 << 20) - 1;
for ([ws2 => 'backend one'], [wss2 => 'backend tls']) {
    my ($path, $name) = @$_;
    my ($c, $err) = ws_open(url_for('tls_front', "/$path/whoami/front", 'wss'));
    ok($c, "wss:// client to /$path/ opens") or diag($err);
    is(ws_next($c), $name, "wss:// client reaches $name");
    is(ws_echo($c, "over tls"), 'over tls', "wss:// client to /$path/ echoes");
    ok(ws_echo($c, $big) eq $big, "wss:// client to /$path/: 1 MiB binary echoes intact");
    $c->close;
}

# ProxyWebsocketAsync On with a wss:// client: under event the request is suspended and the
# child's runtime relays through mod_ssl (to a wss:// backend through mod_ssl's proxy side
# too, its connection held); the tunnel behaves the same.
my $n = 0;
for ([ws2 => 'backend one'], [wss2 => 'backend tls']) {
    my ($path, $name) = @$_;
    my ($c, $err) = ws_open(url_for('tls_front_async', "/$path/whoami/async", 'wss'));
    ok($c, "wss:// client to /$path/ with ProxyWebsocketAsync On opens") or diag($err);
    is(ws_next($c), $name, "it reaches $name");
    ok(ws_echo($c, $big) eq $big, "/$path/: 1 MiB binary echoes intact after the hand-over");
    $c->close;
    $n++;
    my $suspended = () = error_log() =~ /\(request suspended\)/g;
    my $event = error_log() =~ /\[mpm_event:/;
    ok($event ? $suspended >= $n : $suspended == 0,
       $event ? "under event the request to /$path/ was suspended" : "without the event MPM it stays synchronous");
}
