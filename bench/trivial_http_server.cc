// The yardstick for bench/ofrep_load.sh: a minimal Boost.Beast server that answers every
// request with 200 and a 2-byte body, same threads, keep-alive, one strand per connection.
//   trivial_http_server PORT THREADS
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(tcp::socket s) : stream_(std::move(s)) {}
  void Read() {
    req_ = {};
    http::async_read(stream_, buf_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      auto res = std::make_shared<http::response<http::string_body>>(http::status::ok, self->req_.version());
      res->set(http::field::content_type, "application/json");
      res->body() = "ok";
      res->keep_alive(self->req_.keep_alive());
      res->prepare_payload();
      http::async_write(self->stream_, *res, [self, res](beast::error_code ec, std::size_t) {
        if (!ec && res->keep_alive()) self->Read();
      });
    });
  }

 private:
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
};

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8081;
  int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, {net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  std::function<void()> accept = [&] {
    acceptor.async_accept(net::make_strand(ioc), [&](beast::error_code ec, tcp::socket s) {
      if (!ec) std::make_shared<Conn>(std::move(s))->Read();
      accept();
    });
  };
  accept();
  std::printf("listening on %d\n", static_cast<int>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
}
