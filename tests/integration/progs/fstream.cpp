// A C++17 program using std::ofstream/std::ifstream and std::filesystem on paths under argv[1]
// (the prefix); it prints what it saw so the shim run can be compared with the tmpfs run.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

static unsigned long checksum(const std::string &s) {
	unsigned long h = 1469598103934665603ul;
	for (unsigned char c : s) h = (h ^ c) * 1099511628211ul;
	return h;
}

static std::string slurp(const fs::path &p) {
	std::ifstream in(p, std::ios::binary);
	std::ostringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	fs::path P = argv[1];
	fs::create_directories(P / "step_7" / "shards");
	{
		std::ofstream out(P / "step_7" / "shards" / "rank0.bin", std::ios::binary);
		std::vector<int> v(100000);
		std::iota(v.begin(), v.end(), 0);
		out.write(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(int));
		std::cout << "write ok: " << bool(out) << "\n";
	}
	{
		std::ofstream out(P / "step_7" / "notes.txt");
		out << "line one\nline two\n";
	}
	{
		std::ofstream app(P / "step_7" / "notes.txt", std::ios::app);
		app << "appended\n";
	}
	{
		std::ifstream in(P / "step_7" / "notes.txt");
		std::string line;
		while (std::getline(in, line)) std::cout << "read: " << line << "\n";
	}
	std::string bin = slurp(P / "step_7" / "shards" / "rank0.bin");
	std::cout << "bin bytes " << bin.size() << " checksum " << checksum(bin) << "\n";
	{
		std::fstream rw(P / "step_7" / "notes.txt", std::ios::in | std::ios::out | std::ios::binary);
		rw.seekp(5);
		rw << "ONE";
		rw.seekg(0);
		std::string first;
		std::getline(rw, first);
		std::cout << "rw: " << first << "\n";
	}
	std::ifstream missing(P / "nope.txt");
	std::cout << "missing opens: " << bool(missing) << " errno " << std::strerror(errno) << "\n";
	std::ofstream baddir(P / "nodir" / "x.txt");
	std::cout << "ofstream in missing dir opens: " << bool(baddir) << "\n";
	{
		std::ofstream tmp(P / "step_7" / ".metadata.tmp");
		tmp << "meta";
	}
	fs::rename(P / "step_7" / ".metadata.tmp", P / "step_7" / ".metadata");
	fs::copy(P / "step_7", P / "step_8", fs::copy_options::recursive);
	std::error_code ec;
	fs::rename(P / "step_8", fs::path(argv[2]) / "moved", ec);
	std::cout << "rename out of prefix: " << ec.message() << "\n";
	std::vector<std::string> names;
	for (auto &e : fs::recursive_directory_iterator(P))
		names.push_back(fs::relative(e.path(), P).string() + (e.is_directory() ? "/" : "") +
				(e.is_regular_file() ? " " + std::to_string(e.file_size()) : ""));
	std::sort(names.begin(), names.end());
	for (auto &n : names) std::cout << "entry " << n << "\n";
	std::cout << "canonical " << fs::canonical(P / "step_7" / ".." / "step_8").string() << "\n";
	std::cout << "space capacity > 0: " << (fs::space(P).capacity > 0) << "\n";
	fs::current_path(P / "step_7");
	std::cout << "current_path " << fs::current_path().string() << "\n";
	std::ofstream rel("relative.txt");
	rel << "rel";
	rel.close();
	std::cout << "relative exists " << fs::exists(P / "step_7" / "relative.txt") << "\n";
	std::cout << "removed " << fs::remove_all(P / "step_8") << "\n";
	return 0;
}
